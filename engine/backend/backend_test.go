package backend

import (
	"context"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/muxtest"
	"github.com/xdpnet/xdpnet/mux/quicmux"
	"github.com/xdpnet/xdpnet/reuse"
)

// HTTP backends lease stream credit (their client opens the request's
// stream), raw ones a stream; max_streams caps the leases per connection.
func TestBackendAttachMode(t *testing.T) {
	for name, alpn := range map[string]string{"h3": quicmux.ALPNH3, "raw": quicmux.ALPNRaw, "h2": "h2", "h2c": ""} {
		t.Run(name, func(t *testing.T) {
			var conns []*muxtest.Conn
			pool, err := reuse.New(reuse.Config{MaxStreams: 1, Dial: func(context.Context, reuse.Params) (mux.Conn, error) {
				c := muxtest.NewConn(muxtest.Options{MaxStreams: 10, AutoCredit: true})
				conns = append(conns, c)
				return c, nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			rt := &Backend{alpn: alpn, pool: pool, keys: []*reuse.Key{
				reuse.NewKey(reuse.Params{Server: "be/s0", Kind: mux.KindQUIC, ALPN: alpn}),
			}}
			l1, err := rt.Attach(context.Background(), 0, 0, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			l2, err := rt.Attach(context.Background(), 0, 0, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(conns) != 2 || l1.Conn() == l2.Conn() {
				t.Fatalf("two leases with max_streams 1 on %d connections", len(conns))
			}
			want := 0 // h3: the HTTP/3 client opens the request's stream
			if alpn == quicmux.ALPNRaw {
				want = 1
			}
			if got := conns[0].Opened(); got != want || (l1.Stream() != nil) != (want == 1) {
				t.Fatalf("pool opened %d streams (want %d), lease stream %v", got, want, l1.Stream())
			}
			l1.Done(nil)
			l2.Done(nil)
		})
	}
}

// The pool ages idle connections out before the backend's idle timeout.
func TestMaxIdleAgeBelowIdleTimeout(t *testing.T) {
	for _, idle := range []time.Duration{time.Second, 30 * time.Second} {
		if a := maxIdleAge(idle); a <= 0 || a >= idle {
			t.Errorf("idle timeout %v: max idle age %v", idle, a)
		}
	}
}
