package httpmux

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/xdpnet/xdpnet/mux/internal/testenv"
)

// TestHTTP1ServerClosedIdle: the HTTP/1.1 client reads nothing while idle,
// yet a connection its server closed while idle (an idle timeout, a
// restart) is found before the next request is written on it: RoundTrip
// fails with net.ErrClosed and the server saw no second request, so the
// caller may send it elsewhere whatever its method. Over kernel sockets the
// check peeks at the socket, over netstack it is the readability
// notification set when the connection went idle.
func TestHTTP1ServerClosedIdle(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := sockets.TCPListen(t)
	var (
		reqs atomic.Int32
		mu   sync.Mutex
		idle []net.Conn // the server's side of idle connections
	)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reqs.Add(1)
			io.WriteString(w, "ok")
		}),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateIdle {
				mu.Lock()
				idle = append(idle, c)
				mu.Unlock()
			}
		},
	}
	go srv.Serve(ln)
	defer srv.Close()

	c := dialTCP(t, dial, Options{Proto: HTTP1})
	resp := get(t, c, "/", nil)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	testenv.WaitFor(t, "the server's connection idle", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(idle) == 1
	})
	idle[0].Close()
	h := c.h1
	testenv.WaitFor(t, "the server's end of stream at the client", func() bool {
		if h.notifier != nil {
			return h.peerSpoke.Load()
		}
		return h.peerLeft() // no side effect over kernel sockets
	})
	req, _ := http.NewRequest(http.MethodPost, "http://origin/", strings.NewReader("not twice"))
	if _, err := c.RoundTrip(req); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("request on a connection the server closed: %v, want net.ErrClosed", err)
	}
	<-c.Done()
	if n := reqs.Load(); n != 1 {
		t.Fatalf("the server saw %d requests, want 1", n)
	}

	// A request whose context ends closes its connection at once.
	block := make(chan struct{})
	srv2 := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-block
	})}
	ln2, dial2 := sockets.TCPListen(t)
	go srv2.Serve(ln2)
	defer srv2.Close()
	defer close(block)
	c = dialTCP(t, dial2, Options{Proto: HTTP1})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "http://origin/", nil)
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(req)
		done <- err
	}()
	testenv.WaitFor(t, "the request in flight", func() bool { return c.UsedStreams() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	<-c.Done()
}

// TestHTTP1IdleHoldsNoBuffers: an HTTP/1.1 connection takes its buffers
// for a request and gives them back when the response ends with the
// connection open, so an idle one holds none and the next request takes
// them again; bytes a server sends past a response close the connection
// instead of answering the next request.
func TestHTTP1IdleHoldsNoBuffers(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := sockets.TCPListen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	defer srv.Close()

	c := dialTCP(t, dial, Options{Proto: HTTP1})
	defer c.Close()
	for i := range 3 {
		resp := get(t, c, "/", strings.NewReader("body"))
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "ok" {
			t.Fatalf("request %d: %q, %v", i, b, err)
		}
		if c.h1.br != nil || c.h1.bw != nil {
			t.Fatalf("after request %d the idle connection holds its buffers", i)
		}
	}

	// A server out of step: one byte more than its response framed.
	ln2, dial2 := sockets.TCPListen(t)
	go func() {
		sc, err := ln2.Accept()
		if err != nil {
			return
		}
		defer sc.Close()
		if _, err := http.ReadRequest(bufio.NewReader(sc)); err != nil {
			return
		}
		io.WriteString(sc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokX")
		io.Copy(io.Discard, sc)
	}()
	c2 := dialTCP(t, dial2, Options{Proto: HTTP1})
	resp := get(t, c2, "/", nil)
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
		t.Fatalf("response: %q, %v", b, err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://origin/", nil)
	if _, err := c2.RoundTrip(req); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("request after a response with a stray byte: %v; want net.ErrClosed", err)
	}
	<-c2.Done()
}
