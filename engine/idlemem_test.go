package engine_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// holderEnv, when set in the environment of this test binary, makes it an
// idle-connection holder instead of running tests (see TestMain): it opens
// the connections, sends one GET on each, reads the response, prints a
// line "ready OPENED" and then holds them, without a goroutine or buffer
// per connection, until its standard input closes or it is killed.
const holderEnv = "XDPNET_IDLE_HOLDER" // value: "ADDR N PATH"

// holdIdle is the holder's main; it returns the exit status.
func holdIdle(spec string) int {
	f := strings.Fields(spec)
	if len(f) != 3 {
		fmt.Fprintf(os.Stderr, "holder: want ADDR N PATH, got %q\n", spec)
		return 2
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "holder: %v\n", err)
		return 2
	}
	req := "GET " + f[2] + " HTTP/1.1\r\nHost: lab\r\n\r\n"
	conns := make([]net.Conn, n)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
		first  error
	)
	next := make(chan int)
	for range 64 {
		wg.Go(func() {
			d := net.Dialer{Timeout: 10 * time.Second}
			for i := range next {
				c, err := d.Dial("tcp", f[0])
				if err == nil {
					c.SetDeadline(time.Now().Add(20 * time.Second))
					if _, err = io.WriteString(c, req); err == nil {
						var resp *http.Response
						if resp, err = http.ReadResponse(bufio.NewReaderSize(c, 512), nil); err == nil {
							_, err = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
						}
					}
					c.SetDeadline(time.Time{})
				}
				if err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = err
					}
					mu.Unlock()
					if c != nil {
						c.Close()
					}
					continue
				}
				conns[i] = c
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		fmt.Fprintf(os.Stderr, "holder: %d failed, first: %v\n", failed, first)
	}
	fmt.Printf("ready %d\n", n-failed)
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return 0
}

// memSample is a process's memory at one moment.
type memSample struct {
	rss              int64 // VmRSS, bytes
	heapInuse, stack uint64
	goroutines       int
}

// vmRSS reads VmRSS of a process from /proc (pid 0: this one).
func vmRSS(pid int) (int64, error) {
	p := "/proc/self/status"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("%s: no VmRSS", p)
}

// selfMem samples this process after a full collection that returns freed
// memory to the OS, so that two samples differ by what is live.
func selfMem(tb testing.TB) memSample {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, err := vmRSS(0)
	if err != nil {
		tb.Fatal(err)
	}
	return memSample{rss: rss, heapInuse: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// startHolder starts this test binary as a holder of n connections to addr
// in ns and waits until they are open and idle; it returns how many
// opened and a function that closes them and waits for the holder.
func startHolder(tb testing.TB, ns *lab.NS, addr string, n int, path string) (int, func()) {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %s", holderEnv, addr, n, path))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out := &capBuffer{max: 1 << 16}
	cmd.Stdout, cmd.Stderr = out, out
	if err := ns.Start(cmd); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	tb.Cleanup(stop)
	// Ready once it says so (a minute at most: 10,000 connections take
	// seconds on a loaded machine), or gone.
	opened := -1
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(time.Minute)
wait:
	for {
		for line := range strings.Lines(out.String()) {
			if v, found := strings.CutPrefix(line, "ready "); found {
				opened, _ = strconv.Atoi(strings.TrimSpace(v))
				break wait
			}
		}
		select {
		case <-done:
			break wait
		case <-limit:
			break wait
		case <-tick.C:
		}
	}
	if opened < 0 {
		stop()
		tb.Fatalf("holder did not get ready: %s", out.String())
	}
	if opened < n {
		tb.Logf("holder: %s", out.String())
	}
	return opened, stop
}

// idleConnCount is the number of connections BenchmarkIdleConnMemory holds
// (XDPNET_IDLE_CONNS overrides it; the holder needs that many descriptors).
func idleConnCount(tb testing.TB) int {
	n := 10000
	if v := os.Getenv("XDPNET_IDLE_CONNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			tb.Fatalf("XDPNET_IDLE_CONNS=%q: want a positive count", v)
		}
	}
	return n
}

const idleMemConfig = `dataplane: xdp
admin: 127.0.0.1:0
log: {level: warn}
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - {name: http, listen: "198.18.1.1:8080", protocol: http, backend: origins, timeouts: {idle: 10m}}
backends:
  - name: origins
    protocol: h3
    health_check: {enabled: false}
    servers:
      - {name: origin-a, address: "198.18.2.10:4433"}
`

// BenchmarkIdleConnMemory measures what an idle keep-alive client
// connection costs in resident memory: a holder process in the client
// namespace opens N connections (10,000; XDPNET_IDLE_CONNS), sends one GET
// on each and holds them idle. For the engine (in this process, on the
// AF_XDP netstack and on kernel sockets) the figure is the growth of
// VmRSS, Go heap in use and goroutine stacks between a sample before and
// one with the connections idle, each after a collection that returns
// freed memory to the OS; with XDPNET_IDLE_PROFILE=DIR it writes the heap
// profile with the connections idle to DIR/idle-<stack>.pprof (read with
// go tool pprof -sample_index=inuse_space). HAProxy and Caddy, when
// installed, run as processes in the client namespace answering the GET
// themselves (no origin behind them); their figure is the growth of their
// VmRSS. Run it alone with -benchtime 1x: each iteration builds its lab.
func BenchmarkIdleConnMemory(b *testing.B) {
	privtest.RequireRoot(b)
	n := idleConnCount(b)
	for _, stack := range []string{"xdp", "kernel"} {
		b.Run("impl=xdpnet-"+stack, func(b *testing.B) {
			for b.Loop() {
				benchIdleEngine(b, stack, n)
			}
		})
	}
	for _, peer := range []string{"haproxy", "caddy"} {
		b.Run("impl="+peer, func(b *testing.B) {
			for b.Loop() {
				benchIdlePeer(b, peer, n)
			}
		})
	}
}

func benchIdleEngine(b *testing.B, stack string, n int) {
	prev := runtime.MemProfileRate
	runtime.MemProfileRate = 4096
	defer func() { runtime.MemProfileRate = prev }()
	env, err := enginelab.Start(enginelab.Options{Stack: stack, Config: idleMemConfig, Admin: "127.0.0.1:0"})
	privtest.SkipIfNotSupported(b, err)
	if err != nil {
		b.Fatal(err)
	}
	defer env.Close()
	// Warm up: the backend connection, the proxy's pools and the
	// frontend's first connection exist before the first sample.
	c := env.HTTPClient(4, false)
	for range 8 {
		if err := getOK(b.Context(), c.Transport, env.FrontendURL("http")+"/bytes/64"); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	c.CloseIdleConnections()
	before := selfMem(b)
	opened, stop := startHolder(b, env.Lab.Client, "198.18.1.1:8080", n, "/bytes/64")
	defer stop()
	after := selfMem(b)
	if dir := os.Getenv("XDPNET_IDLE_PROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, "idle-"+stack+".pprof"))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	reportIdle(b, opened, after.rss-before.rss)
	b.ReportMetric(float64(int64(after.heapInuse)-int64(before.heapInuse))/float64(opened), "heap-B/conn")
	b.ReportMetric(float64(int64(after.stack)-int64(before.stack))/float64(opened), "stack-B/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(opened), "goroutines/conn")
}

func reportIdle(b *testing.B, opened int, grown int64) {
	b.ReportMetric(float64(opened), "conns")
	b.ReportMetric(float64(grown)/float64(opened), "RSS-B/conn")
}

// peerIdleConfig is a peer's configuration answering GET / itself on
// addr, with idle keep-alive connections kept 10 minutes.
func peerIdleConfig(peer, addr string, n int) (name, text string) {
	host, port, _ := net.SplitHostPort(addr)
	switch peer {
	case "haproxy":
		return "haproxy.cfg", fmt.Sprintf(`global
  maxconn %d
defaults
  mode http
  timeout client 10m
  timeout http-keep-alive 10m
  timeout http-request 10s
frontend idle
  bind %s
  http-request return status 200 content-type text/plain string ok
`, n+100, addr)
	default:
		return "Caddyfile", fmt.Sprintf(`{
	admin off
	auto_https off
	servers {
		protocols h1
		timeouts {
			idle 10m
		}
	}
}
http://:%s {
	bind %s
	respond "ok"
}
`, port, host)
	}
}

func benchIdlePeer(b *testing.B, peer string, n int) {
	l, err := lab.New(lab.Options{})
	privtest.SkipIfNotSupported(b, err)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	addr := net.JoinHostPort(l.ClientLink.PeerV4()[0].String(), "18080")
	if peer == "haproxy" {
		// HAProxy reserves two descriptors per connection (client and
		// server side) and refuses to start when maxconn needs more
		// than the hard limit, which this sandbox keeps at 20000: it
		// holds fewer then, and the figure is per connection held.
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Fatal(err)
		}
		n = min(n, int(lim.Max/2)-300)
	}
	name, text := peerIdleConfig(peer, addr, n)
	cfg := filepath.Join(b.TempDir(), name)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	args := []string{"-f", cfg, "-db"}
	if peer == "caddy" {
		args = []string{"run", "--config", cfg, "--adapter", "caddyfile"}
	}
	path, err := exec.LookPath(peer)
	if err != nil {
		b.Skipf("%s not installed", peer)
	}
	p, err := launch(l.Client, []string{"GOMAXPROCS=2"}, path, args...)
	if err != nil {
		b.Fatal(err)
	}
	defer p.kill()
	// Ready and warmed up: a first holder of 8 connections.
	exited := func() bool {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	if !testutil.Eventually(func() bool {
		if exited() {
			return true
		}
		var c net.Conn
		err := l.Client.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, time.Second); return })
		if err == nil {
			c.Close()
		}
		return err == nil
	}) || exited() {
		b.Fatalf("%s did not listen on %s: %s", peer, addr, p.out.String())
	}
	warm, stopWarm := startHolder(b, l.Client, addr, 8, "/")
	stopWarm()
	if warm != 8 {
		b.Fatalf("%s: %d of 8 warm-up requests answered", peer, warm)
	}
	pid := p.cmd.Process.Pid
	before, err := vmRSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	opened, stop := startHolder(b, l.Client, addr, n, "/")
	defer stop()
	after, err := vmRSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	reportIdle(b, opened, after-before)
}
