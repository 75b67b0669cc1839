package h3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/internal/testenv"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// labCert is one self-signed certificate shared by the package's tests.
var labCert = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	cert, pool, err := quicmux.SelfSigned([]string{"backend.lab", "127.0.0.1"}, time.Hour)
	if err != nil {
		panic(err)
	}
	return cert, pool
})

// sockets makes the tests' sockets. The default is kernel loopback; tests
// over the netstack pair or the lab replace it (see TestOverNetstack).
var sockets = testenv.Kernel()

// quicPair dials a client quicmux.Conn offering alpn to a server one.
func quicPair(t testing.TB, alpn string, srvCfg quicmux.Config) (cli, srv *quicmux.Conn) {
	t.Helper()
	cpc, spc := sockets.PacketPair(t)
	cert, pool := labCert()
	str := quicmux.NewTransport(spc, srvCfg)
	t.Cleanup(func() { str.Close() })
	ln, err := str.Listen(quicmux.ServerTLS(cert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *quicmux.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	ctr := quicmux.NewTransport(cpc, quicmux.Config{})
	t.Cleanup(func() { ctr.Close() })
	cli, err = ctr.Dial(ctx, spc.LocalAddr(), quicmux.ClientTLS("backend.lab", pool, alpn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	srv = <-accepted
	if srv == nil {
		t.FailNow()
	}
	t.Cleanup(func() { srv.Close() })
	return cli, srv
}

// h3Pair connects a Client to an http3.Server running handler on the
// server side of the connection.
func h3Pair(t testing.TB, srvCfg quicmux.Config, handler http.Handler) *Client {
	t.Helper()
	h, _ := h3PairServer(t, srvCfg, handler)
	return h
}

func h3PairServer(t testing.TB, srvCfg quicmux.Config, handler http.Handler) (*Client, *http3.Server) {
	t.Helper()
	cli, srv := quicPair(t, quicmux.ALPNH3, srvCfg)
	hs := &http3.Server{Handler: handler}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.ServeQUICConn(srv.QUIC())
	}()
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		<-done
	})
	h, err := NewClient(cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h, hs
}

// socketTests are the tests that run again over the engine's netstack, in
// memory and on AF_XDP.
func socketTests() []testenv.Test {
	return []testenv.Test{
		{Name: "HTTP3Client", Fn: TestHTTP3Client},
		{Name: "HTTP3GoAway", Fn: TestHTTP3GoAway},
	}
}

// TestOverNetstack runs the socket-level tests over the engine's netstack.
func TestOverNetstack(t *testing.T) { testenv.RunOverNetstack(t, &sockets, socketTests()) }

// TestOverAFXDP runs them with the engine's netstack on AF_XDP against
// quic-go on the kernel in a lab namespace (root only).
func TestOverAFXDP(t *testing.T) {
	testenv.RunOverAFXDP(t, &sockets, socketTests())
}

// BenchmarkHTTP3Requests: GET requests through Client, 16 in
// parallel, to an http3.Server on a quicmux server connection (kernel
// loopback). cpu-ns/op is the whole process's CPU per request, client and
// server.
func BenchmarkHTTP3Requests(b *testing.B) {
	h := h3Pair(b, quicmux.Config{MaxIncomingStreams: 1000}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const parallel = 16
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testenv.CPUTime()
	var wg sync.WaitGroup
	var once sync.Once
	for w := range parallel {
		wg.Go(func() {
			for i := w; i < b.N; i += parallel {
				// http.NoBody, as the engine's proxy sends a GET.
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://backend.lab/", http.NoBody)
				rsp, err := h.RoundTrip(req)
				if err == nil {
					var body []byte
					body, err = io.ReadAll(rsp.Body)
					rsp.Body.Close()
					if err == nil && string(body) != "ok" {
						err = errors.New("wrong body " + string(body))
					}
				}
				if err != nil {
					once.Do(func() { b.Error(err) })
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((testenv.CPUTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// TestHTTP3GoAway: after the server's GOAWAY (RFC 9114 section 5.2) the
// connection takes no new requests: RoundTrip fails, and the connection
// reports no credit and not alive, without a stream-limit error.
func TestHTTP3GoAway(t *testing.T) {
	testenv.CheckGoroutines(t)
	h, hs := h3PairServer(t, quicmux.Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://backend.lab/", nil)
	rsp, err := h.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rsp.Body)
	rsp.Body.Close()
	go hs.Shutdown(ctx)
	c := h.c
	testenv.WaitFor(t, "GOAWAY to stop new requests", func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://backend.lab/", nil)
		rsp, err := h.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, rsp.Body)
			rsp.Body.Close()
			return false
		}
		var limitErr *quic.StreamLimitReachedError
		if errors.As(err, &limitErr) {
			t.Fatalf("stream-limit error after GOAWAY: %v", err)
		}
		// A request already sent may be refused with a stream reset;
		// the next one meets the GOAWAY before it opens a stream.
		return !c.Alive()
	})
	if c.AvailStreams() != 0 {
		t.Fatalf("AvailStreams = %d after GOAWAY", c.AvailStreams())
	}
}

func TestHTTP3Client(t *testing.T) {
	testenv.CheckGoroutines(t)
	// Each held request waits for its own release: with one channel for
	// both, the second handler could take the first release, and the
	// first response, which the test reads, never ended.
	release := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	start := time.Now()
	var hellos atomic.Int32 // requests the server's /hello handler saw
	routes := http.NewServeMux()
	routes.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { hellos.Add(1); io.WriteString(w, "hello") })
	routes.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	routes.HandleFunc("/hold/{n}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "held")
		w.(http.Flusher).Flush()
		if n, err := strconv.Atoi(r.PathValue("n")); err == nil && n >= 0 && n < len(release) {
			<-release[n]
		}
	})
	h := h3Pair(t, quicmux.Config{MaxIncomingStreams: 2}, routes)
	// Registered after the server's cleanup, so it runs first: a failed
	// test unblocks the held handlers instead of hanging in Server.Close.
	t.Cleanup(func() {
		for _, r := range release {
			close(r)
		}
	})
	c := h.c
	w := testenv.NewWatcher()
	c.SetWatcher(w)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	get := func(ctx context.Context, path string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://backend.lab"+path, nil)
		return h.RoundTrip(req)
	}

	rsp, err := get(ctx, "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if string(body) != "hello" || rsp.StatusCode != 200 {
		t.Fatalf("GET /hello: %d %q", rsp.StatusCode, body)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://backend.lab/echo", strings.NewReader(strings.Repeat("b", 100000)))
	rsp, err = h.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if len(body) != 100000 {
		t.Fatalf("POST /echo returned %d bytes", len(body))
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping on an h3 connection: %v", err)
	}

	// Exact credit: two held requests use the peer's whole limit.
	testenv.WaitFor(t, "credit back", func() bool { return c.AvailStreams() == 2 })
	var held []*http.Response
	for n := range 2 {
		rsp, err := get(ctx, fmt.Sprintf("/hold/%d", n))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, rsp)
	}
	if c.AvailStreams() != 0 || c.UsedStreams() != 2 {
		t.Fatalf("avail %d used %d with two held requests", c.AvailStreams(), c.UsedStreams())
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = get(short, "/hello")
	cancelShort()
	if !errors.Is(err, mux.ErrNoCredit) {
		t.Fatalf("request without credit: %v, want mux.ErrNoCredit", err)
	}
	before := w.Credit.Load()
	release[0] <- struct{}{}
	body, _ = io.ReadAll(held[0].Body)
	held[0].Body.Close()
	if string(body) != "held" {
		t.Fatalf("held body %q", body)
	}
	testenv.WaitFor(t, "credit notification", func() bool { return w.Credit.Load() > before })
	if c.AvailStreams() != 1 || c.UsedStreams() != 1 {
		t.Fatalf("avail %d used %d after one request ended", c.AvailStreams(), c.UsedStreams())
	}
	seen, st0 := hellos.Load(), c.QUIC().ConnectionStats()
	rsp, err = get(ctx, "/hello")
	if err != nil {
		st := c.QUIC().ConnectionStats()
		t.Fatalf("GET /hello with credit back: %v, %v into the test; the server's handler ran %d times for it; avail %d used %d; client sent %d packets and received %d meanwhile",
			err, time.Since(start), hellos.Load()-seen, c.AvailStreams(), c.UsedStreams(), st.PacketsSent-st0.PacketsSent, st.PacketsReceived-st0.PacketsReceived)
	}
	io.Copy(io.Discard, rsp.Body)
	rsp.Body.Close()
	release[1] <- struct{}{}
	io.Copy(io.Discard, held[1].Body)
	held[1].Body.Close()
	testenv.WaitFor(t, "all credit back", func() bool { return c.AvailStreams() == 2 && c.UsedStreams() == 0 })

	// A request quic-go would fail to encode is refused before any stream.
	bad, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://backend.lab/", nil)
	bad.Header.Set("X-Bad", "line\nbreak")
	if _, err := h.RoundTrip(bad); err == nil {
		t.Fatal("invalid header accepted")
	}
	if c.AvailStreams() != 2 {
		t.Fatal("a refused request took credit")
	}
}

// TestHTTP3ClientCallerTrace: the caller's httptrace hooks run once each;
// RoundTrip adds its own WroteHeaders hook to them.
func TestHTTP3ClientCallerTrace(t *testing.T) {
	testenv.CheckGoroutines(t)
	h := h3Pair(t, quicmux.Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wrote, first atomic.Int32
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders:         func() { wrote.Add(1) },
		GotFirstResponseByte: func() { first.Add(1) },
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://backend.lab/", nil)
	rsp, err := h.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if err != nil || string(body) != "ok" {
		t.Fatalf("body %q, %v", body, err)
	}
	if wrote.Load() != 1 || first.Load() != 1 {
		t.Fatalf("caller's hooks ran WroteHeaders %d, GotFirstResponseByte %d times, want 1 each", wrote.Load(), first.Load())
	}
	if c := h.c; c.UsedStreams() != 0 {
		t.Fatalf("UsedStreams = %d after the body ended", c.UsedStreams())
	}
}

func TestHTTP3ClientNeedsH3(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv := quicPair(t, quicmux.ALPNRaw, quicmux.Config{})
	if _, err := NewClient(cli, nil); !errors.Is(err, errNotH3) {
		t.Fatalf("NewClient on a raw connection: %v", err)
	}
	if _, err := NewClient(srv, nil); !errors.Is(err, errNotH3) {
		t.Fatalf("NewClient on a server connection: %v", err)
	}
}
