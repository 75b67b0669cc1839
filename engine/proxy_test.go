package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/netapi"
	"github.com/xdpnet/xdpnet/engine/origin"
	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// loopOrigins starts n origins on loopback UDP ports and returns them.
type testOrigin struct {
	*origin.Server
	Addr net.Addr
}

// labCert is a self-signed certificate for the loopback origins and the
// pool that trusts it.
func labCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, pool, err := quicmux.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pool
}

func loopOrigins(t testing.TB, cert tls.Certificate, n int, rawTarget string) []testOrigin {
	t.Helper()
	var out []testOrigin
	for i := range n {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		s := &origin.Server{Name: fmt.Sprintf("o%d", i), RawTarget: rawTarget}
		go s.Serve(pc, cert)
		t.Cleanup(func() { s.Close() })
		out = append(out, testOrigin{s, pc.LocalAddr()})
	}
	return out
}

// loopEngine starts an engine on the kernel stack with the config body
// (YAML after "backends:"-level placeholders %s replaced by server lists).
func loopEngine(t testing.TB, roots *x509.CertPool, yml string) *Engine {
	t.Helper()
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yml)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e, err := New(cfg, Options{Net: &netapi.Kernel{N: 2}, Log: log, BackendRootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func serverList(os []testOrigin) string {
	var b strings.Builder
	for _, o := range os {
		fmt.Fprintf(&b, "      - {name: %s, address: %q}\n", o.Name, o.Addr.String())
	}
	return b.String()
}

func baseConfig(kind string, os []testOrigin, extra string) string {
	proto, beProto := "http", "h3"
	if kind == "tcp" {
		proto, beProto = "tcp", "raw"
	}
	if kind == "h3" {
		proto = "h3"
	}
	return fmt.Sprintf(`dataplane: kernel
admin: "127.0.0.1:0"
frontends:
  - {name: fe, listen: "127.0.0.1:0", protocol: %s, backend: be, timeouts: {header: 2s, idle: 5s}}
backends:
  - name: be
    protocol: %s
    health_check: {interval: 500ms, timeout: 500ms, rise: 1, fall: 2}
    timeouts: {connect: 1s, request: 5s}
%s    servers:
%s`, proto, beProto, extra, serverList(os))
}

func TestProxyHTTPRoundRobinAndReuse(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 2, "")
	e := loopEngine(t, roots, baseConfig("http", os, ""))
	url := "http://" + e.FrontendAddr("fe").String()
	c := &http.Client{Timeout: 5 * time.Second}
	seen := map[string]int{}
	const n = 200
	for i := range n {
		resp, err := c.Get(url + "/bytes/100")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != 100 {
			t.Fatalf("request %d: status %d, %d bytes", i, resp.StatusCode, len(b))
		}
		seen[resp.Header.Get("X-Origin")]++
	}
	if seen["o0"] == 0 || seen["o1"] == 0 {
		t.Errorf("round robin used only %v", seen)
	}
	st := e.Stats()
	if st.RequestsOK != n {
		t.Errorf("requests ok = %v, want %d", st.RequestsOK, n)
	}
	// One client connection on one worker: at most one connection per
	// server should have been opened (plus nothing else).
	if st.BackendConnsOpened > 2 {
		t.Errorf("opened %v backend connections for %d requests", st.BackendConnsOpened, n)
	}
}

func TestProxyH2CAndH3Frontend(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 1, "")
	t.Run("h2c", func(t *testing.T) {
		e := loopEngine(t, roots, baseConfig("http", os, ""))
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &protos}}
		resp, err := c.Post("http://"+e.FrontendAddr("fe").String()+"/echo", "text/plain", strings.NewReader("ping"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(b) != "ping" {
			t.Fatalf("proto %s body %q", resp.Proto, b)
		}
	})
	t.Run("h3", func(t *testing.T) {
		e := loopEngine(t, roots, baseConfig("h3", os, ""))
		tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		defer tr.Close()
		c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		resp, err := c.Get("https://" + e.FrontendAddr("fe").String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "hello from o0") {
			t.Fatalf("body %q", b)
		}
	})
}

func TestProxyTCPTunnel(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 1, "") // echo
	e := loopEngine(t, roots, baseConfig("tcp", os, ""))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", e.FrontendAddr("fe").String(), 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			msg := strings.Repeat(fmt.Sprint(i), 100000)
			go func() {
				io.WriteString(c, msg)
				c.(*net.TCPConn).CloseWrite()
			}()
			b, err := io.ReadAll(c)
			if err != nil || string(b) != msg {
				t.Errorf("tunnel %d: %d bytes back, err %v", i, len(b), err)
			}
		})
	}
	wg.Wait()
}

// A server that dies mid-load: idempotent requests are retried on the other
// server, none fails.
func TestProxyBackendKilledRetries(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 2, "")
	e := loopEngine(t, roots, baseConfig("http", os, ""))
	url := "http://" + e.FrontendAddr("fe").String() + "/"
	c := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				if w == 0 && i == 10 {
					os[1].Close()
				}
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					mu.Lock()
					failed++
					mu.Unlock()
					t.Logf("request %d/%d: err %v resp %v", w, i, err, resp)
				}
			}
		})
	}
	wg.Wait()
	if failed > 0 {
		t.Errorf("%d requests failed after a backend was killed", failed)
	}
}

// Malformed HTTP gets 400 and the engine keeps serving.
func TestProxyMalformedRequest(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 1, "")
	e := loopEngine(t, roots, baseConfig("http", os, ""))
	addr := e.FrontendAddr("fe").String()
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
		"\x16\x03\x01garbage\r\n\r\n",
		"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.Contains(line, " 400 ") {
			t.Errorf("%q: got %q, want a 400", raw, line)
		}
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after malformed requests: %d", resp.StatusCode)
	}
}

// SIGTERM semantics: Shutdown while requests are in flight lets each finish.
func TestShutdownDrainsInFlight(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 1, "")
	e := loopEngine(t, roots, baseConfig("http", os, ""))
	url := "http://" + e.FrontendAddr("fe").String() + "/sleep?d=300ms"
	c := &http.Client{Timeout: 5 * time.Second}
	const n = 10
	errs := make(chan error, n)
	started := make(chan struct{}, n)
	for range n {
		go func() {
			started <- struct{}{}
			resp, err := c.Get(url)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "slept") {
				err = fmt.Errorf("status %d body %q", resp.StatusCode, b)
			}
			errs <- err
		}()
	}
	for range n {
		<-started
	}
	// Wait until all requests reached the origin, then drain.
	deadline := time.Now().Add(5 * time.Second)
	for os[0].Stats().Requests < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// SIGHUP semantics: a reload switches new requests to the new backends
// without dropping an established client connection or a request in flight.
func TestReloadKeepsClientConnections(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 2, "")
	e := loopEngine(t, roots, baseConfig("http", os[:1], ""))
	addr := e.FrontendAddr("fe").String()
	url := "http://" + addr
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	var conns sync.Map
	getOrigin := func(path string) string {
		t.Helper()
		var local string
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr().String() },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		conns.Store(local, true)
		return resp.Header.Get("X-Origin")
	}
	if o := getOrigin("/"); o != "o0" {
		t.Fatalf("before reload: origin %q", o)
	}
	// A request in flight across the reload.
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(url + "/sleep?d=300ms")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for os[0].Stats().Requests < 2 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	next, err := config.Parse([]byte(strings.Replace(baseConfig("http", os[1:], ""), `admin: "127.0.0.1:0"`, `admin: "127.0.0.1:0"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	next.Admin = e.cfg.Admin
	if err := e.Reload(next); err != nil {
		t.Fatal(err)
	}
	if o := getOrigin("/"); o != "o1" {
		t.Errorf("after reload: origin %q, want o1", o)
	}
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("the client used %d connections across the reload, want 1", n)
	}
	if got := <-slow; !strings.HasPrefix(got, "slept") {
		t.Errorf("request in flight across the reload: %q", got)
	}
	// A change that needs a restart is refused and changes nothing.
	bad := *next
	bad.Dataplane = "xdp"
	if err := e.Reload(&bad); err == nil {
		t.Error("reload changing the data plane was accepted")
	}
}

// The request timeout answers 504 and is not retried; connect timeouts and
// max_streams shape the pool; a server taken out by health checks comes back.
func TestTimeoutsLimitsAndHealth(t *testing.T) {
	cert, roots := labCert(t)
	t.Run("request timeout", func(t *testing.T) {
		os := loopOrigins(t, cert, 1, "")
		cfg := strings.Replace(baseConfig("http", os, ""), "timeouts: {connect: 1s, request: 5s}", "timeouts: {connect: 1s, request: 200ms}", 1)
		e := loopEngine(t, roots, cfg)
		resp, err := http.Get("http://" + e.FrontendAddr("fe").String() + "/sleep?d=2s")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("status %d, want 504", resp.StatusCode)
		}
		if r := e.Stats().Retries; r != 0 {
			t.Errorf("a timed-out request was retried %v times", r)
		}
	})
	// The request timeout bounds the server's silence: an upload that
	// moves, however long, is not cut by it.
	t.Run("request timeout spares a moving upload", func(t *testing.T) {
		os := loopOrigins(t, cert, 1, "")
		cfg := strings.Replace(baseConfig("http", os, ""), "timeouts: {connect: 1s, request: 5s}", "timeouts: {connect: 1s, request: 300ms}", 1)
		e := loopEngine(t, roots, cfg)
		pr, pw := io.Pipe()
		const chunks, size = 12, 512 // 6 KiB: the echo's response stays buffered until the body ends
		go func() {                  // paced upload, four times the request timeout; ends with the request
			chunk := bytes.Repeat([]byte{'x'}, size)
			for range chunks {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			pw.Close()
		}()
		resp, err := http.Post("http://"+e.FrontendAddr("fe").String()+"/echo", "application/octet-stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || len(got) != chunks*size {
			t.Errorf("status %d, %d bytes echoed (%v); want 200 and %d", resp.StatusCode, len(got), err, chunks*size)
		}
	})
	t.Run("max_streams", func(t *testing.T) {
		os := loopOrigins(t, cert, 1, "")
		e := loopEngine(t, roots, baseConfig("http", os, "    reuse: {policy: always, max_streams: 2}\n"))
		url := "http://" + e.FrontendAddr("fe").String() + "/sleep?d=200ms"
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				resp, err := http.Get(url)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
			})
		}
		wg.Wait()
		// 8 concurrent requests, at most 2 streams per connection.
		if got := e.Stats().BackendConnsOpened; got < 4 {
			t.Errorf("%v backend connections carried 8 concurrent requests with max_streams 2", got)
		}
		// The requests are over: no lease, reserved credit or stream is
		// left on any pooled connection.
		if st := e.Stats().Engine.Backends["be"].Reuse; st.Leases != 0 || st.OpenErrors != 0 || st.Attaches < 8 {
			t.Errorf("reuse stats after the burst: %+v", st)
		}
		e.mu.Lock()
		rt := e.backends["be"]
		e.mu.Unlock()
		if n := rt.UsedStreams(); n != 0 {
			t.Errorf("%d streams still used on the backend's connections", n)
		}
	})
	t.Run("health recovers", func(t *testing.T) {
		// One origin killed, then a new one on the same address.
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().(*net.UDPAddr)
		o := &origin.Server{Name: "o0"}
		go o.Serve(pc, cert)
		e := loopEngine(t, roots, baseConfig("http", []testOrigin{{o, addr}}, ""))
		up := func() int { return e.Stats().ServersUp }
		o.Kill()
		testutil.WaitFor(t, "server marked down", func() bool { return up() == 0 })
		pc2, err := net.ListenUDP("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		o2 := &origin.Server{Name: "o0"}
		go o2.Serve(pc2, cert)
		t.Cleanup(func() { o2.Close() })
		testutil.WaitFor(t, "server back up", func() bool { return up() == 1 })
		resp, err := http.Get("http://" + e.FrontendAddr("fe").String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("after recovery: status %d", resp.StatusCode)
		}
	})
}

// reuse policy never: each client connection gets its own backend
// connection, which closes with it.
func TestReusePolicyNever(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 1, "")
	e := loopEngine(t, roots, baseConfig("http", os, "    reuse: {policy: never}\n"))
	url := "http://" + e.FrontendAddr("fe").String() + "/"
	for range 3 {
		tr := &http.Transport{}
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		for range 5 {
			resp, err := c.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		tr.CloseIdleConnections()
	}
	if got := e.Stats().BackendConnsOpened; got != 3 {
		t.Errorf("%v backend connections for 3 client connections under policy never, want 3", got)
	}
	testutil.WaitFor(t, "private connections closed with their clients", func() bool { return e.Stats().BackendConnsOpen == 0 })
}

// A request whose reused backend connection died while idle (here: the
// origin restarted on the same address and answers the old connection with
// a stateless reset) is sent once more on a fresh connection if it is
// idempotent (reuse.Worker.Retry); a POST is not replayed. Retries are off,
// so only the stale-connection retry can save the GET.
func TestProxyRetriesRequestOnDeadReusedConnection(t *testing.T) {
	cert, roots := labCert(t)
	key := &quic.StatelessResetKey{1, 2, 3}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	start := func(pc net.PacketConn) *origin.Server {
		o := &origin.Server{Name: "o", StatelessResetKey: key}
		go o.Serve(pc, cert)
		t.Cleanup(func() { o.Close() })
		return o
	}
	o := start(pc)
	// restart kills the origin silently and starts a new one on its
	// address, with the same reset key.
	restart := func() {
		o.Kill()
		pc, err := net.ListenUDP("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		o = start(pc)
	}
	e := loopEngine(t, roots, fmt.Sprintf(`dataplane: kernel
admin: "127.0.0.1:0"
frontends:
  - {name: fe, listen: "127.0.0.1:0", protocol: http, backend: be}
backends:
  - name: be
    protocol: h3
    retries: 0
    health_check: {enabled: false}
    timeouts: {connect: 2s, request: 5s}
    servers:
      - {name: o, address: %q}
`, addr.String()))
	url := "http://" + e.FrontendAddr("fe").String()
	// One client connection: one session, so requests after its first
	// one may take the pooled idle connection.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	do := func(method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := do("GET", "/", ""); s != 200 {
		t.Fatalf("first GET: status %d", s)
	}

	restart()
	if s := do("GET", "/", ""); s != 200 {
		t.Errorf("GET on the dead reused connection: status %d, want 200 after a retry", s)
	}
	if n := o.Stats().Requests; n != 1 {
		t.Errorf("restarted origin served %d requests, want 1", n)
	}
	if r := e.Stats().Reuse.Retries; r != 1 {
		t.Errorf("reuse retries %d, want 1", r)
	}

	restart()
	if s := do("POST", "/echo", "once"); s != http.StatusBadGateway {
		t.Errorf("POST on the dead reused connection: status %d, want 502 (not replayed)", s)
	}
	if n := o.Stats().Requests; n != 0 {
		t.Errorf("restarted origin served %d requests, want 0: the POST was replayed", n)
	}
	if r := e.Stats().Reuse.Retries; r != 1 {
		t.Errorf("reuse retries %d, want still 1", r)
	}
	if s := do("POST", "/echo", "again"); s != 200 {
		t.Errorf("POST after the failure: status %d", s)
	}
}

// BenchmarkProxyLoopback sends b.N sequential GETs (1 KiB responses)
// through an engine on loopback kernel sockets to one HTTP/3 origin, all in
// this process. Its allocs/op counts every allocation of the request's path
// (client, engine, origin): unlike req/s on a shared machine it does not
// move with the load, so it resolves changes to the engine's per-request
// work.
func BenchmarkProxyLoopback(b *testing.B) {
	cert, roots := labCert(b)
	os := loopOrigins(b, cert, 1, "")
	e := loopEngine(b, roots, baseConfig("http", os, ""))
	url := "http://" + e.FrontendAddr("fe").String() + "/bytes/1024"
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for range 50 {
		get()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		get()
	}
}
