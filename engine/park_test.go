package engine_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// parkConfig is idleMemConfig with the frontend's idle timeout at idle.
func parkConfig(idle string) string {
	return strings.Replace(idleMemConfig, "timeouts: {idle: 10m}", "timeouts: {idle: "+idle+"}", 1)
}

// Idle HTTP/1.1 client connections leave the HTTP server between requests
// (engine/frontend park.go) and come back when the client speaks again:
// curl's requests on one kept-alive connection, h2load's pipelined
// HTTP/1.1 requests and the idle timeout all behave as before, and an
// idle connection holds no goroutine on the AF_XDP stack.
func TestLabParkedConnections(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{Config: parkConfig("2s")})
			url := env.FrontendURL("http")

			// Three requests on one connection (curl reuses it): one
			// connect, then two on the connection parked in between.
			out, err := runIn(t, env.StartClient, 30*time.Second, "curl", "--http1.1", "-sS", "-m", "10",
				"-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects} %{http_code} %{size_download}\n",
				url+"/bytes/100", url+"/bytes/100000", url+"/bytes/7")
			if err != nil || out != "1 200 100\n0 200 100000\n0 200 7\n" {
				t.Errorf("curl, three requests on one connection: %q, %v", out, err)
			}

			// Pipelined requests: h2load writes -m requests before
			// reading; the ones the server had read ahead when it
			// parked the connection are served from what it kept.
			out, err = runIn(t, env.StartClient, 60*time.Second, "h2load", "--h1", "-n", "400", "-c", "2", "-m", "4", "-t", "1",
				"-T", "10", url+"/bytes/512")
			if err != nil || !strings.Contains(out, "400 succeeded, 0 failed, 0 errored") {
				t.Errorf("h2load --h1 -m4: %v\n%s", err, out)
			}

			// Idle connections, held by this test binary in the
			// client namespace after one GET each.
			const n = 64
			before := runtime.NumGoroutine()
			opened, stop := startHolder(t, env.Lab.Client, "198.18.1.1:8080", n, "/bytes/64")
			defer stop()
			if opened != n {
				t.Fatalf("%d of %d connections opened", opened, n)
			}
			testutil.WaitFor(t, "the engine to count the idle connections", func() bool {
				return clientConns(t, env, "http") == n
			})
			// The kernel stack waits for a parked connection with a
			// goroutine in the runtime poller; netstack calls back.
			if grown := runtime.NumGoroutine() - before; stack == "xdp" && grown > n/4 {
				t.Errorf("%d idle connections hold %d goroutines; want them parked without one", n, grown)
			}
			// The idle timeout (2s) closes them, parked as they are.
			testutil.WaitFor(t, "the idle timeout to close the parked connections", func() bool {
				return clientConns(t, env, "http") == 0
			})
		})
	}
}

// A drain closes parked connections at once (the client reads the end of
// the stream) and returns; the engine counts them gone.
func TestLabDrainClosesParked(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{Config: parkConfig("1m")})
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			c, err := env.Dial(ctx, "tcp", "198.18.1.1:8080")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for range 2 { // the second request comes back from parking
				if _, err := io.WriteString(c, "GET /bytes/10 HTTP/1.1\r\nHost: lab\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 10 || resp.StatusCode != 200 {
					t.Fatalf("response: %d, %d bytes, %v", resp.StatusCode, len(b), err)
				}
			}
			testutil.WaitFor(t, "the engine to count the connection", func() bool {
				return clientConns(t, env, "http") == 1
			})
			done := make(chan error, 1)
			go func() { done <- env.Engine.Shutdown(ctx) }()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
				t.Errorf("parked connection at drain: read %d, %v; want the end of the stream", n, err)
			}
			if err := <-done; err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
}

// isReset reports a connection reset by the peer.
func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && strings.Contains(oe.Err.Error(), "reset")
}

// servedInPlace counts this process's goroutines that run inside
// net/http's per-connection goroutine (*conn).serve: HTTP/1.1 exchanges in
// progress, and HTTP/2 connections served where net/http accepted them.
func servedInPlace(t *testing.T) int {
	t.Helper()
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 2); err != nil {
		t.Fatal(err)
	}
	return strings.Count(b.String(), "net/http.(*conn).serve(")
}

// h2c and https connections (engine/frontend handoff.go) against real
// clients: curl over HTTPS with HTTP/1.1 and HTTP/2 and nghttp with h2c
// prior knowledge, several requests on one connection; h2load's pipelined
// HTTP/1.1 requests over TLS (records crypto/tls read ahead when the
// connection was parked) and its h2 and h2c streams. Idle HTTPS HTTP/1.1
// connections are parked (no goroutine on the AF_XDP stack), idle HTTP/2
// ones are served off net/http's accepting goroutine; the idle timeout
// closes both, and every closed HTTPS connection counts its handshake.
func TestLabParkedH2AndHTTPS(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{Config: strings.ReplaceAll(idleBenchConfig(t, 100), "idle: 10m", "idle: 2s")})
			h := &httpsLab{env: env}
			plain, tls := env.FrontendURL("http"), env.FrontendURL("https")
			for _, c := range []struct{ name, flag, url string }{
				{"https HTTP/1.1", "--http1.1", tls},
				{"https h2", "--http2", tls},
			} {
				out, err := runIn(t, env.StartClient, 30*time.Second, "curl", c.flag, "-k", "-sS", "-m", "10",
					"-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects} %{http_code} %{size_download}\n",
					c.url+"/bytes/100", c.url+"/bytes/100000", c.url+"/bytes/7")
				if err != nil || out != "1 200 100\n0 200 100000\n0 200 7\n" {
					t.Errorf("curl %s, three requests on one connection: %q, %v", c.name, out, err)
				}
			}
			// curl 7.88 fails a second request on an h2c prior-knowledge
			// connection (also against main before handoff.go): nghttp
			// sends three streams on one.
			out, err := runIn(t, env.StartClient, 30*time.Second, "nghttp", "-nv", plain+"/bytes/100", plain+"/bytes/100000", plain+"/bytes/7")
			if n := strings.Count(out, ":status: 200"); err != nil || n != 3 {
				t.Errorf("nghttp h2c, three requests on one connection: %d answered 200, %v\n%s", n, err, out)
			}
			// max_frame_size's default, advertised (RFC 9113 section 6.5.2).
			if !strings.Contains(out, "[SETTINGS_MAX_FRAME_SIZE(0x05):16384]") {
				t.Errorf("nghttp h2c: the frontend's SETTINGS do not say MAX_FRAME_SIZE 16384\n%s", out)
			}
			for _, args := range [][]string{
				{"--h1", "-m", "4", tls + "/bytes/512"},
				{"-m", "8", tls + "/bytes/512"},
				{"-m", "8", plain + "/bytes/512"},
			} {
				out, err := runIn(t, env.StartClient, 60*time.Second, "h2load", append([]string{"-n", "400", "-c", "2", "-t", "1", "-T", "10"}, args...)...)
				if err != nil || !strings.Contains(out, "400 succeeded, 0 failed, 0 errored") {
					t.Errorf("h2load %v: %v\n%s", args, err, out)
				}
			}
			testutil.WaitFor(t, "curl's and h2load's connections to close", func() bool {
				return clientConns(t, env, "https") == 0 && clientConns(t, env, "http") == 0
			})
			// 2 curl and 4 h2load connections over TLS, each counted at its close.
			h.waitHandshakes(t, "full", 6)

			const n = 32
			for _, c := range []struct {
				kind, frontend, addr string
				goroutines           int // per idle connection
			}{
				{kindHTTPSH1, "https", "198.18.1.1:8443", 0},
				{kindHTTPSH2, "https", "198.18.1.1:8443", 2},
				{kindH2C, "http", "198.18.1.1:8080", 2},
			} {
				before, inPlace := runtime.NumGoroutine(), servedInPlace(t)
				opened, stop := startHolderOf(t, env.Lab.Client, c.addr, n, "/bytes/64", c.kind, nil)
				if opened != n {
					stop()
					t.Fatalf("%s: %d of %d connections opened", c.kind, opened, n)
				}
				testutil.WaitFor(t, "the engine to count the idle "+c.kind+" connections", func() bool {
					return clientConns(t, env, c.frontend) == n
				})
				if grown := servedInPlace(t) - inPlace; grown > 0 {
					t.Errorf("%d idle %s connections: %d more goroutines in net/http's (*conn).serve; want none", n, c.kind, grown)
				}
				// The kernel stack waits for a parked connection with a
				// goroutine in the runtime poller; netstack calls back.
				if grown := runtime.NumGoroutine() - before; stack == "xdp" && grown > c.goroutines*n+n/4 {
					t.Errorf("%d idle %s connections hold %d goroutines; want %d each", n, c.kind, grown, c.goroutines)
				}
				testutil.WaitFor(t, "the idle timeout to close the idle "+c.kind+" connections", func() bool {
					return clientConns(t, env, c.frontend) == 0
				})
				stop()
			}
			h.waitHandshakes(t, "full", 6+2*n)
		})
	}
}

// A drain ends idle connections of every kind served off net/http's
// accepting goroutine or parked (handoff.go): h2c and h2 ones get GOAWAY
// and close, an HTTPS HTTP/1.1 one is closed; the engine's Shutdown
// returns before its deadline, with nothing cut.
func TestLabDrainHandedOff(t *testing.T) {
	env := startLab(t, "xdp", enginelab.Options{Config: idleBenchConfig(t, 100)})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var h2 []*http.ClientConn
	for _, c := range []struct{ scheme, addr string }{{"http", "198.18.1.1:8080"}, {"https", "198.18.1.1:8443"}} {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(c.scheme == "http")
		protos.SetHTTP2(c.scheme == "https")
		tr := &http.Transport{
			DialContext:     func(ctx context.Context, network, addr string) (net.Conn, error) { return env.Dial(ctx, network, addr) },
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			Protocols:       &protos,
		}
		cc, err := tr.NewClientConn(ctx, c.scheme, c.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.scheme+"://"+c.addr+"/bytes/10", nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("%s: %s, want HTTP/2", c.scheme, resp.Proto)
		}
		h2 = append(h2, cc)
	}
	c, err := env.Dial(ctx, "tcp", "198.18.1.1:8443")
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	defer tc.Close()
	br := bufio.NewReader(tc)
	for range 2 { // the second request comes back from parking
		if _, err := io.WriteString(tc, "GET /bytes/10 HTTP/1.1\r\nHost: lab\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 10 {
			t.Fatalf("https HTTP/1.1: %d bytes, %v", len(b), err)
		}
	}
	testutil.WaitFor(t, "the engine to count the connections", func() bool {
		return clientConns(t, env, "http") == 1 && clientConns(t, env, "https") == 2
	})
	done := make(chan error, 1)
	go func() { done <- env.Engine.Shutdown(ctx) }()
	tc.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("parked HTTPS connection at drain: read %d, %v; want the end of the stream", n, err)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	for _, cc := range h2 {
		testutil.WaitFor(t, "the HTTP/2 connections to end with the drain", func() bool { return cc.Err() != nil })
	}
}
