//lint:file-ignore SA1019 x/net/http2's server with a stream limit and its Framer make the peers of these tests

package httpmux

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/xdpnet/xdpnet/mux/internal/testenv"
)

var sockets = testenv.Kernel()

func dialTCP(t *testing.T, dial func(context.Context) (net.Conn, error), o Options) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tcp, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(ctx, tcp, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func get(t *testing.T, c *Conn, path string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://origin"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestHTTP2Credit: h2c with prior knowledge against x/net's server with a
// stream limit of 3; credit follows requests, the watcher hears it, and a
// graceful shutdown waits for the request in flight.
func TestHTTP2Credit(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := sockets.TCPListen(t)
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		if r.URL.Path == "/hold" {
			<-release
		}
		w.Write(b)
	})
	srv := &http2.Server{MaxConcurrentStreams: 3}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(nc, &http2.ServeConnOpts{Handler: h})
		}
	}()
	defer func() { ln.Close(); <-done }()

	c := dialTCP(t, dial, Options{Proto: HTTP2})
	w := testenv.NewWatcher()
	c.SetWatcher(w)
	if got := c.AvailStreams(); got != 3 {
		t.Fatalf("AvailStreams after connect = %d, want the server's 3", got)
	}
	held := get(t, c, "/hold", strings.NewReader("x"))
	if got, used := c.AvailStreams(), c.UsedStreams(); got != 2 || used != 1 {
		t.Fatalf("with one request in flight: avail %d used %d, want 2 and 1", got, used)
	}
	msg := bytes.Repeat([]byte("0123456789"), 100_000)
	resp := get(t, c, "/", bytes.NewReader(msg))
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %d bytes, err %v; want %d", len(got), err, len(msg))
	}
	if n := w.Credit.Load(); n != 1 {
		t.Fatalf("StreamCredit calls = %d, want 1", n)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() { shut <- c.Shutdown(context.Background()) }()
	testenv.WaitFor(t, "shutdown to stop new requests", func() bool { return !c.Alive() && c.AvailStreams() == 0 })
	select {
	case <-c.Done():
		t.Fatal("connection closed with a request in flight")
	default:
	}
	close(release)
	io.Copy(io.Discard, held.Body)
	held.Body.Close()
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if err := <-w.Dead; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ConnDead error %v does not wrap net.ErrClosed", err)
	}
}

// TestGoAwayRejected: a server that answers the first request with a GOAWAY
// whose last stream id is 0 (RFC 9113 section 6.8) did not process it; the
// error wraps ErrRejected. It also pins x/net's unexported error text.
func TestGoAwayRejected(t *testing.T) {
	ln, dial := sockets.TCPListen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(nc, preface); err != nil {
			return
		}
		fr := http2.NewFramer(nc, nc)
		fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 10})
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.PingFrame:
				if !f.IsAck() {
					fr.WritePing(true, f.Data)
				}
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.HeadersFrame:
				fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			}
		}
	}()
	defer func() { ln.Close(); <-done }()
	c := dialTCP(t, dial, Options{Proto: HTTP2})
	req, _ := http.NewRequest(http.MethodPost, "http://origin/", strings.NewReader("not idempotent"))
	_, err := c.RoundTrip(req)
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("RoundTrip after GOAWAY(last stream 0): %v, want ErrRejected", err)
	}
	if c.Alive() || c.AvailStreams() != 0 {
		t.Fatal("connection still takes requests after GOAWAY")
	}
}

// TestHTTP1: one request at a time; a kept-alive response returns the
// credit, Connection: close and an unread body end the connection.
func TestHTTP1(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := sockets.TCPListen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		w.Write(b)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	c := dialTCP(t, dial, Options{Proto: HTTP1})
	w := testenv.NewWatcher()
	c.SetWatcher(w)
	if c.AvailStreams() != 1 || c.Kind().String() != "http1" {
		t.Fatalf("idle HTTP/1.1 connection: avail %d kind %s", c.AvailStreams(), c.Kind())
	}
	resp := get(t, c, "/", strings.NewReader("hello"))
	if c.AvailStreams() != 0 || c.UsedStreams() != 1 {
		t.Fatalf("in flight: avail %d used %d", c.AvailStreams(), c.UsedStreams())
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" {
		t.Fatalf("body %q", b)
	}
	testenv.WaitFor(t, "credit back", func() bool { return c.AvailStreams() == 1 && w.Credit.Load() > 0 })
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp = get(t, c, "/close", strings.NewReader("bye"))
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	<-c.Done()
	if err := <-w.Dead; !errors.Is(err, net.ErrClosed) || c.Alive() || c.AvailStreams() != 0 {
		t.Fatalf("after Connection: close: dead %v alive %v", err, c.Alive())
	}

	c = dialTCP(t, dial, Options{Proto: HTTP1})
	resp = get(t, c, "/", strings.NewReader(strings.Repeat("x", 1<<20)))
	resp.Body.Close() // unread: the connection cannot be reused
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a connection whose response was not read stays open")
	}
}

// TestTLS: h2 and http/1.1 over TLS by ALPN; an HTTP/2 dial to a server that
// only speaks HTTP/1.1 fails (Go's server refuses the handshake with a
// no_application_protocol alert, RFC 7301 section 3.2; a server that
// ignores ALPN would get ErrALPN).
func TestTLS(t *testing.T) {
	for _, tc := range []struct {
		name       string
		serverH2   bool
		proto      Proto
		wantErr    bool
		wantProtoM int
	}{
		{"h2", true, HTTP2, false, 2},
		{"http1-tls", true, HTTP1, false, 1},
		{"h2-to-http1-server", false, HTTP2, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, r.Proto)
			}))
			srv.EnableHTTP2 = tc.serverH2
			srv.StartTLS()
			defer srv.Close()
			roots := x509.NewCertPool()
			roots.AddCert(srv.Certificate())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tcp, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c, err := Dial(ctx, tcp, Options{Proto: tc.proto, TLS: &tls.Config{ServerName: "example.com", RootCAs: roots}})
			if tc.wantErr {
				if err == nil || !errors.Is(err, ErrALPN) && !strings.Contains(err.Error(), "no application protocol") {
					t.Fatalf("Dial: %v, want a protocol negotiation failure", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req, _ := http.NewRequest(http.MethodGet, "http://example.com/", nil)
			resp, err := c.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != tc.wantProtoM || !strings.HasPrefix(string(b), "HTTP/") {
				t.Fatalf("response %s, body %q", resp.Proto, b)
			}
		})
	}
}

// TestOverNetstack runs the credit and HTTP/1.1 tests over two netstacks
// joined in memory, the sockets the engine's data plane gives.
func TestOverNetstack(t *testing.T) {
	testenv.RunOverNetstack(t, &sockets, []testenv.Test{
		{Name: "HTTP2Credit", Fn: TestHTTP2Credit},
		{Name: "HTTP1", Fn: TestHTTP1},
		{Name: "HTTP1ServerClosedIdle", Fn: TestHTTP1ServerClosedIdle},
	})
}
