package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// stacks are the data planes every end-to-end test runs on: the AF_XDP
// netstack and the kernel-socket baseline, with the same proxy logic.
var stacks = []string{"xdp", "kernel"}

func startLab(t *testing.T, stack string, opts enginelab.Options) *enginelab.Env {
	t.Helper()
	privtest.RequireRoot(t)
	opts.Stack = stack
	opts.Admin = "127.0.0.1:0"
	if testing.Verbose() {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	env, err := enginelab.Start(opts)
	privtest.SkipIfNotSupported(t, err)
	t.Cleanup(func() { closeLab(t, env) })
	return env
}

// closeLab closes env, bounded in time: an engine that cannot stop (a
// failing test's subject) must not hang the package. Past the bound the
// lab is removed under it and the test fails.
func closeLab(t *testing.T, env *enginelab.Env) {
	done := make(chan error, 1)
	go func() { done <- env.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("engine close still running after 10s; removing the lab under it")
		if err := env.Lab.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
	}
}

// get runs n GETs over conns concurrent keep-alive connections and returns
// how many failed (with the first error).
func get(t *testing.T, c *http.Client, url string, n, conns int) (failed int, first error) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range conns {
		wg.Go(func() {
			for range next {
				resp, err := c.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = &statusError{resp.StatusCode}
					}
				}
				if err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return failed, first
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

func TestLabHTTP(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{})
			c := env.HTTPClient(4, false)
			const n = 300
			failed, err := get(t, c, env.FrontendURL("http")+"/bytes/1000", n, 4)
			if failed > 0 {
				t.Fatalf("%d of %d requests failed: %v", failed, n, err)
			}
			st := env.Engine.Stats()
			if st.Stack != map[string]string{"xdp": "xdp+netstack", "kernel": "kernel"}[stack] {
				t.Errorf("ran on stack %q", st.Stack)
			}
			t.Logf("%s: %v requests, %v backend connections opened, reuse %+v", st.Stack, st.RequestsOK, st.BackendConnsOpened, st.Reuse)
			if st.BackendConnsOpened > 8 {
				t.Errorf("%v backend connections for %d requests over 4 client connections", st.BackendConnsOpened, n)
			}
		})
	}
}

// runIn runs an external client in a lab namespace, bounded by its own
// flags and by a hard deadline (then it is killed by PID), and returns its
// combined output.
func runIn(t *testing.T, start func(*exec.Cmd) error, limit time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(needTool(t, name), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := start(cmd); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s still running after %v; killed. Output:\n%s", name, limit, out.String())
		return "", nil
	}
}

// HTTP/3 clients (quic-go) through the h3 frontend, and raw-stream tunnels
// through the tcp frontend (echoed by the origins).
func TestLabH3AndTunnel(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{})
			c, closeFn, err := env.HTTP3Client()
			if err != nil {
				t.Fatal(err)
			}
			defer closeFn()
			if failed, err := get(t, c, env.FrontendURL("h3")+"/bytes/3000", 100, 4); failed > 0 {
				t.Fatalf("h3: %d failed: %v", failed, err)
			}
			addr := strings.TrimPrefix(env.FrontendURL("tcp"), "http://")
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					conn, err := env.Dial(ctx, "tcp", addr)
					if err != nil {
						t.Error(err)
						return
					}
					defer conn.Close()
					conn.SetDeadline(time.Now().Add(10 * time.Second))
					msg := bytes.Repeat([]byte{byte('a' + i)}, 256<<10)
					go func() {
						conn.Write(msg)
						conn.(*net.TCPConn).CloseWrite()
					}()
					back, err := io.ReadAll(conn)
					if err != nil || !bytes.Equal(back, msg) {
						t.Errorf("tunnel %d: %d of %d bytes back intact, err %v", i, len(back), len(msg), err)
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestLabCurl(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{})
			url := env.FrontendURL("http")
			for _, path := range []string{"/", "/bytes/100000", "/healthz"} {
				out, err := runIn(t, env.StartClient, 20*time.Second, "curl", "--http1.1", "-sS", "-m", "5",
					"-o", "/dev/null", "-w", "%{http_code} %{size_download}", url+path)
				if err != nil || !strings.HasPrefix(out, "200 ") {
					t.Errorf("curl %s: %q, %v", path, out, err)
				}
			}
			// POST with a body goes through (not idempotent, sent once).
			out, err := runIn(t, env.StartClient, 20*time.Second, "curl", "--http1.1", "-sS", "-m", "5",
				"--data-binary", "ping-through-the-engine", url+"/echo")
			if err != nil || out != "ping-through-the-engine" {
				t.Errorf("curl POST /echo: %q, %v", out, err)
			}
		})
	}
}

func TestLabH2load(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{})
			// http:// URIs make h2load speak h2c with prior knowledge.
			out, err := runIn(t, env.StartClient, 60*time.Second, "h2load", "-n", "400", "-c", "4", "-m", "8", "-t", "1",
				"-T", "10", env.FrontendURL("http")+"/bytes/512")
			if err != nil {
				t.Fatalf("h2load: %v\n%s", err, out)
			}
			if !strings.Contains(out, "400 succeeded, 0 failed, 0 errored") || !strings.Contains(out, "h2c") {
				t.Fatalf("h2load did not succeed over h2c:\n%s", out)
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "finished in") || strings.HasPrefix(l, "requests:") {
					t.Log(l)
				}
			}
		})
	}
}

func TestLabIperf3(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			iperf3 := needTool(t, "iperf3") // make deps installs it; CI fails without
			env := startLab(t, stack, enginelab.Options{RawTarget: "198.18.2.10:5201"})
			srv := exec.Command(iperf3, "-s", "-1", "-B", "198.18.2.10", "-p", "5201")
			if err := env.StartBackend(srv); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
			// iperf3 -s needs a moment to listen; retry the client a few
			// times (bounded) rather than sleep a fixed time.
			var out string
			var err error
			for range 20 {
				out, err = runIn(t, env.StartClient, 30*time.Second, "iperf3", "-c", "198.18.1.1", "-p", "5201", "-t", "2", "-J", "--connect-timeout", "3000")
				if err == nil || !strings.Contains(out, "connect") {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("iperf3 through the tcp frontend: %v\n%s", err, out)
			}
			var res struct {
				End struct {
					SumReceived struct {
						Bytes         float64 `json:"bytes"`
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("iperf3 JSON: %v\n%s", err, out)
			}
			if res.End.SumReceived.Bytes == 0 {
				t.Fatalf("iperf3 moved no data:\n%s", out)
			}
			t.Logf("%s: iperf3 through the tcp frontend: %.0f Mbit/s", stack, res.End.SumReceived.BitsPerSecond/1e6)
		})
	}
}

// A backend that crashes mid-load (its socket vanishes, no goodbye):
// idempotent requests are retried on the other server, and none fails
// except a response that was already under way (its headers sent) when the
// backend died, which the engine counts as aborted.
func TestLabBackendKilled(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{})
			c := env.HTTPClient(8, false)
			url := env.FrontendURL("http") + "/bytes/2000"
			if failed, err := get(t, c, url, 100, 8); failed > 0 {
				t.Fatalf("warm-up: %d failed: %v", failed, err)
			}
			var wg sync.WaitGroup
			var failed int
			var first error
			wg.Go(func() { failed, first = get(t, c, url, 600, 8) })
			// Kill origin-b once the load is under way.
			deadline := time.Now().Add(10 * time.Second)
			for env.Origins[1].Stats().Requests < 150 && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
			aborted := env.Engine.Stats().RequestsAborted
			env.Origins[1].Kill()
			wg.Wait()
			st := env.Engine.Stats()
			aborted = st.RequestsAborted - aborted
			if float64(failed) > aborted {
				t.Fatalf("%d requests failed after a backend was killed, %v of them mid-response: %v", failed, aborted, first)
			}
			t.Logf("retries %v, redispatches %v, aborted mid-response %v, servers up %d/%d", st.Retries, st.Redispatches, aborted, st.ServersUp, st.Servers)
		})
	}
}

// An origin restarted between requests leaves the engine's pooled
// connections to it dead without a word; the first requests on them get a
// stateless reset and are sent again on fresh connections (reuse.Worker.
// Retry), with backend retries off so that nothing else can save them.
func TestLabRetryAfterOriginRestart(t *testing.T) {
	// Health checks off: on a loaded machine their 400 ms timeout can
	// take a server out, which is not what this test is about.
	cfg := strings.Replace(config.Demo, "    balance: roundrobin\n", "    balance: roundrobin\n    retries: 0\n", 1)
	cfg = strings.Replace(cfg, "    health_check: {interval: 500ms, timeout: 400ms, path: /healthz, rise: 2, fall: 2}\n", "    health_check: {enabled: false}\n", 1)
	if strings.Count(cfg, "    retries: 0\n") != 1 || strings.Count(cfg, "    health_check: {enabled: false}\n") != 1 {
		t.Fatal("demo config changed: cannot set the origins backend's retries and health checks")
	}
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{Config: cfg})
			c := env.HTTPClient(4, false)
			defer c.CloseIdleConnections()
			url := env.FrontendURL("http") + "/bytes/1000"
			if failed, err := get(t, c, url, 40, 4); failed > 0 {
				t.Fatalf("warm-up: %d failed: %v", failed, err)
			}
			for i := range env.Origins {
				if err := env.RestartOrigin(i); err != nil {
					t.Fatal(err)
				}
			}
			if failed, err := get(t, c, url, 40, 4); failed > 0 {
				t.Fatalf("%d of 40 requests failed after the origins restarted: %v", failed, err)
			}
			st := env.Engine.Stats()
			if st.Reuse.Retries == 0 || st.Retries != 0 {
				t.Errorf("reuse retries %d, backend retries %v; want some reuse retries and no backend retries", st.Reuse.Retries, st.Retries)
			}
			t.Logf("reuse retries %d, connections opened %v", st.Reuse.Retries, st.BackendConnsOpened)
		})
	}
}

// An origin down for a while (its port closed: the engine's dials get
// ICMP port unreachable on the server's own netstack socket) and then back
// is used again within a poll of coming back; the other server carries
// the idempotent requests meanwhile, so none fails.
func TestLabOriginDownThenBack(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{})
			c := env.HTTPClient(4, false)
			defer c.CloseIdleConnections()
			url := env.FrontendURL("http") + "/bytes/1000"
			if failed, err := get(t, c, url, 40, 4); failed > 0 {
				t.Fatalf("warm-up: %d failed: %v", failed, err)
			}
			env.StopOrigin(1)
			if failed, err := get(t, c, url, 200, 4); failed > 0 {
				t.Fatalf("%d of 200 requests failed with one origin down: %v", failed, err)
			}
			name := env.Config.Backends[0].Servers[1].Name
			if err := env.StartOrigin(1); err != nil {
				t.Fatal(err)
			}
			back := time.Now()
			deadline := back.Add(15 * time.Second)
			for {
				resp, err := c.Get(url)
				if err != nil {
					t.Fatalf("request while the origin came back: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request while the origin came back: %s (%s)", resp.Status, resp.Header.Get("Proxy-Status"))
				}
				if resp.Header.Get("X-Origin") == name {
					break
				}
				if time.Now().After(deadline) {
					st := env.Engine.Stats()
					t.Fatalf("origin back for 15s and never proxied to (servers up %d/%d, connect errors %v)", st.ServersUp, st.Servers, st.ConnectErrors)
				}
				time.Sleep(5 * time.Millisecond) // pacing the poll, not an assertion
			}
			st := env.Engine.Stats()
			t.Logf("origin served again %v after it started; connect errors %v, retries %v", time.Since(back).Round(time.Millisecond), st.ConnectErrors, st.Retries)
		})
	}
}

// SIGTERM semantics on the lab: a drain during load lets every request in
// flight complete.
func TestLabDrainDuringLoad(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{})
			c := env.HTTPClient(16, false)
			const n = 16
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				wg.Go(func() {
					resp, err := c.Get(env.FrontendURL("http") + "/sleep?d=400ms")
					if err == nil {
						var b []byte
						b, err = io.ReadAll(resp.Body)
						resp.Body.Close()
						if err == nil && (resp.StatusCode != 200 || !strings.HasPrefix(string(b), "slept")) {
							err = &statusError{resp.StatusCode}
						}
					}
					errs <- err
				})
			}
			deadline := time.Now().Add(10 * time.Second)
			for sum(env) < n && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := env.Engine.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error("request lost in drain:", err)
				}
			}
		})
	}
}

// serverConns counts goroutines serving HTTP/1.1 or h2c client connections.
func serverConns() int { return testutil.Goroutines("net/http.(*conn).serve(") }

func sum(env *enginelab.Env) int64 {
	var n int64
	for _, o := range env.Origins {
		n += o.Stats().Requests
	}
	return n
}

// Malformed HTTP gets a 400 and the engine keeps serving; clients that
// never finish their headers are timed out and leave no goroutine behind.
func TestLabMalformedAndSlowClients(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			cfg := strings.Replace(config.Demo, `protocol: http, backend: origins}`,
				`protocol: http, backend: origins, timeouts: {header: 300ms, idle: 2s}}`, 1)
			env := startLab(t, stack, enginelab.Options{Config: cfg})
			addr := strings.TrimPrefix(env.FrontendURL("http"), "http://")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c := env.HTTPClient(1, false)
			if failed, err := get(t, c, env.FrontendURL("http")+"/", 5, 1); failed > 0 {
				t.Fatal(err)
			}
			c.CloseIdleConnections()

			for _, raw := range []string{
				"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
				"\x16\x03\x01garbage\r\n\r\n",
				"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
			} {
				conn, err := env.Dial(ctx, "tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(conn, raw)
				line, _ := bufio.NewReader(conn).ReadString('\n')
				conn.Close()
				if !strings.Contains(line, " 400 ") && !strings.Contains(line, " 505 ") {
					t.Errorf("%q: got %q, want a 4xx/505 status", raw, line)
				}
			}
			// Slow clients: headers never finished.
			var slow []net.Conn
			for range 20 {
				conn, err := env.Dial(ctx, "tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
				slow = append(slow, conn)
			}
			for _, conn := range slow {
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := io.ReadAll(conn) // the engine closes it (after a 408 or not)
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Error("a client that never finished its headers was not timed out")
				}
				conn.Close()
			}
			if failed, err := get(t, c, env.FrontendURL("http")+"/", 20, 2); failed > 0 {
				t.Fatalf("engine stopped serving after malformed and slow clients: %v", err)
			}
			c.CloseIdleConnections()
			// The server goroutines of the timed-out connections are gone
			// (bounded wait: the client's own connections close too).
			deadline := time.Now().Add(5 * time.Second)
			for serverConns() > 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := serverConns(); n > 0 {
				t.Errorf("%d HTTP server connection goroutines left after every client closed", n)
			}
		})
	}
}

// Two dedicated queues per veth: four workers on xdp, each with its own
// reuse shard, all serving.
func TestLabTwoQueues(t *testing.T) {
	env := startLab(t, "xdp", enginelab.Options{Queues: 2})
	if w := env.Engine.Stats().Workers; w != 4 {
		t.Fatalf("%d workers for 2 queues on each of 2 interfaces, want 4", w)
	}
	c := env.HTTPClient(8, false)
	if failed, err := get(t, c, env.FrontendURL("http")+"/bytes/1000", 400, 8); failed > 0 {
		t.Fatalf("%d failed: %v", failed, err)
	}
	// Every client connection went to the worker of the RX queue its SYN
	// arrived on (the endpoint's flow table), none by address hash.
	if s := env.Engine.Stats(); s.PicksByQueue == 0 || s.PicksByHash != 0 {
		t.Errorf("workers picked by RX queue for %v connections, by hash for %v; want all by queue", s.PicksByQueue, s.PicksByHash)
	}
}
