package httpmux

import (
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
