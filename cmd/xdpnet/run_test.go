package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/origin"
	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lockedBuffer is a bytes.Buffer safe for the logger and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// `xdpnet run` on the kernel stack: SIGHUP reloads, `xdpnet stats` reads the
// admin endpoint, SIGTERM during load drains with every request completing.
func TestRunSignals(t *testing.T) {
	dir := t.TempDir()
	o, pc, certFile := startLoopOrigin(t, dir)

	admin, front := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "x.yaml")
	write := func(retries int) {
		text := fmt.Sprintf(`dataplane: kernel
workers: 2
admin: %q
frontends: [{name: web, listen: %q, protocol: http, backend: b}]
backends:
  - name: b
    retries: %d
    tls: {ca: %q}
    servers: [{name: o, address: %q}]
`, admin, front, retries, certFile, pc.LocalAddr())
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(2)
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", "-c", cfg, "-drain", "10s"}, io.Discard, &stderr) }()
	var getErr error
	up := testutil.Eventually(func() bool {
		var resp *http.Response
		if resp, getErr = http.Get("http://" + admin + "/healthz"); getErr == nil {
			resp.Body.Close()
		}
		return getErr == nil
	})
	if !up {
		t.Fatalf("engine did not come up: %v\n%s", getErr, stderr.String())
	}

	// SIGHUP with a bad file: refused, still serving.
	os.WriteFile(cfg, []byte("dataplane: kernel\nbogus: 1\n"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, &stderr, "reload refused")
	// SIGHUP with a good file: applied.
	write(3)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, &stderr, "configuration reloaded")

	var out bytes.Buffer
	if code := run([]string{"stats", "-admin", admin}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "kernel") {
		t.Errorf("stats: exit %d\n%s", code, out.String())
	}

	// Prometheus exposition on the admin address.
	if resp, err := http.Get("http://" + front + "/"); err == nil {
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`xdpnet_requests_total{class="2xx",frontend="web",result="ok"}`, "xdpnet_request_duration_seconds_bucket",
		"xdpnet_backend_connections_opened_total", "xdpnet_reuse_attaches_total", `xdpnet_info{stack="kernel"} 1`, "xdpnet_server_up"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics has no %s", m)
		}
	}

	// SIGTERM while requests are in flight.
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			resp, err := http.Get("http://" + front + "/sleep?d=400ms")
			if err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && !strings.HasPrefix(string(b), "slept") {
					err = fmt.Errorf("status %d body %q", resp.StatusCode, b)
				}
			}
			errs <- err
		}()
	}
	// Bounded: past the timeout the drain below still has to hold.
	testutil.Eventually(func() bool { return o.Stats().Requests >= n })
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("run exited %d after SIGTERM\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not exit after SIGTERM")
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error("request lost in drain:", err)
		}
	}
}

func waitFor(t *testing.T, b *lockedBuffer, s string) {
	t.Helper()
	if !testutil.Eventually(func() bool { return strings.Contains(b.String(), s) }) {
		t.Fatalf("log never said %q:\n%s", s, b.String())
	}
}

// startLoopOrigin serves the lab origin (HTTP/3) on a loopback port, with
// a self-signed certificate written to dir (its PEM file is returned for
// the backend's tls.ca), until the test ends.
func startLoopOrigin(t *testing.T, dir string) (*origin.Server, *net.UDPConn, string) {
	t.Helper()
	certFile, keyFile, err := quicmux.WriteSelfSigned(dir, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := quicmux.LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	o := &origin.Server{Name: "o"}
	go o.Serve(pc, cert) // ends when o closes
	t.Cleanup(func() { o.Close() })
	return o, pc, certFile
}

// startRun runs `xdpnet run -c cfg` in this process until the test ends,
// then stops it with SIGTERM as an operator would; it returns run's
// standard error.
func startRun(t *testing.T, cfg string) *lockedBuffer {
	t.Helper()
	stderr := new(lockedBuffer)
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", "-c", cfg, "-drain", "5s"}, io.Discard, stderr) }()
	t.Cleanup(func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("run did not exit after SIGTERM")
		}
	})
	return stderr
}

// A second SIGTERM during a drain cuts it at once: run returns with the
// drain's error long before -drain, and the request still in flight is
// cut rather than waited for.
func TestRunSecondSignalCutsDrain(t *testing.T) {
	dir := t.TempDir()
	o, pc, certFile := startLoopOrigin(t, dir)
	admin, front := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "x.yaml")
	text := fmt.Sprintf(`dataplane: kernel
admin: %q
frontends: [{name: web, listen: %q, protocol: http, backend: b}]
backends:
  - {name: b, tls: {ca: %q}, timeouts: {request: 1m}, servers: [{name: o, address: %q}]}
`, admin, front, certFile, pc.LocalAddr())
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", "-c", cfg, "-drain", "1m"}, io.Discard, &stderr) }()
	waitFor(t, &stderr, "engine started")
	slow := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + front + "/sleep?d=30s")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		slow <- err
	}()
	testutil.WaitFor(t, "the slow request at the origin", func() bool { return o.Stats().Requests >= 1 })
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	waitFor(t, &stderr, "signal: draining")
	start := time.Now()
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code == 0 {
			t.Errorf("run exited 0 after a cut drain\n%s", stderr.String())
		}
		if !strings.Contains(stderr.String(), "second signal") {
			t.Errorf("the log does not say why the drain was cut:\n%s", stderr.String())
		}
		t.Logf("run returned %v after the second SIGTERM", time.Since(start))
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after a second SIGTERM")
	}
	if err := <-slow; err == nil {
		t.Error("the request in flight completed, though the drain was cut")
	}
}
