package reuse_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/h3"
	"github.com/xdpnet/xdpnet/mux/quicmux"
	"github.com/xdpnet/xdpnet/reuse"
)

// realQUIC starts a QUIC listener for alpn on loopback that grants
// maxStreams concurrent streams, closed at the end of the test (skipped with
// -short: real QUIC handshakes). It returns the listener, the Params of a
// server behind it and a dialer for them, whose connections share one
// client socket, as a worker's do in the engine.
func realQUIC(t *testing.T, alpn string, maxStreams int) (*quicmux.Listener, *reuse.Params, func(context.Context, reuse.Params) (*quicmux.Conn, error)) {
	t.Helper()
	if testing.Short() {
		t.Skip("real QUIC handshakes; skipped with -short")
	}
	cert, roots, err := quicmux.SelfSigned([]string{"backend.lab"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	spc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	str := quicmux.NewTransport(spc, quicmux.Config{MaxIncomingStreams: int64(maxStreams)})
	t.Cleanup(func() { str.Close() })
	ln, err := str.Listen(quicmux.ServerTLS(cert, alpn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &reuse.Params{Server: "b/s1", Kind: mux.KindQUIC, Dst: ln.Addr().(*net.UDPAddr).AddrPort(), SNI: "backend.lab", ALPN: alpn}
	p.Dst = netip.AddrPortFrom(p.Dst.Addr().Unmap(), p.Dst.Port())
	cpc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctr := quicmux.NewTransport(cpc, quicmux.Config{})
	t.Cleanup(func() { ctr.Close() })
	dial := func(ctx context.Context, p reuse.Params) (*quicmux.Conn, error) {
		return ctr.Dial(ctx, net.UDPAddrFromAddrPort(p.Dst), quicmux.ClientTLS(p.SNI, roots, p.ALPN))
	}
	return ln, p, dial
}

// TestRealQUICCreditReentry runs the pool on the real QUIC mux (quic-go over
// loopback UDP) against a server granting 2 concurrent streams: a third
// request opens a second connection instead of blocking, and when a stream
// ends the server's MAX_STREAMS frame puts the first connection back into
// avail while its other stream is still open.
func TestRealQUICCreditReentry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, p, dial := realQUIC(t, quicmux.ALPNRaw, 2)
	go func() { // echo server
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				for {
					s, err := c.AcceptStream(ctx)
					if err != nil {
						return
					}
					go func() {
						io.Copy(s, s)
						s.Close()
					}()
				}
			}()
		}
	}()
	pool, err := reuse.New(reuse.Config{
		Policy: reuse.PolicyAlways,
		Dial: func(ctx context.Context, p reuse.Params) (mux.Conn, error) {
			c, err := dial(ctx, p)
			if err != nil {
				return nil, err // not a typed nil *quicmux.Conn
			}
			return c, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w := pool.Worker(0)

	roundTrip := func(l reuse.Lease) {
		t.Helper()
		s := l.Stream()
		if _, err := s.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(s)
		if err != nil || string(b) != "ping" {
			t.Fatalf("echo %q, %v", b, err)
		}
		l.Done(nil)
	}
	l1, err := w.Attach(ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := w.Attach(ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	c1 := l1.Conn()
	if l2.Conn() != c1 || c1.AvailStreams() != 0 {
		t.Fatalf("want both streams on the first connection, avail %d", c1.AvailStreams())
	}
	l3, err := w.Attach(ctx, p, nil) // c1 is full: dial, do not wait
	if err != nil {
		t.Fatal(err)
	}
	if l3.Conn() == c1 {
		t.Fatal("full connection handed out")
	}
	roundTrip(l3)
	roundTrip(l1) // the server's MAX_STREAMS for this stream re-inserts c1 (l2 still open)
	deadline := time.Now().Add(10 * time.Second)
	for pool.Stats().Reinsertions == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no MAX_STREAMS re-insertion: avail %d, stats %+v", c1.AvailStreams(), pool.Stats())
		}
		time.Sleep(5 * time.Millisecond) // waiting for the peer's frame, not asserting a duration
	}
	l4, err := w.Attach(ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l4.Conn() != c1 {
		t.Fatal("re-inserted connection not used first (avail before safe)")
	}
	roundTrip(l4)
	roundTrip(l2)
	if err := c1.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if st := pool.Stats(); st.Dials != 2 || st.Leases != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRealHTTP3AttachConn runs AttachConn leases on real HTTP/3 connections
// (h3.Client over quic-go on loopback) to a server granting 2
// concurrent streams: two leases reserve the first connection's credit
// before their requests open a stream, so a third lease dials instead of
// sharing it; the requests then open their streams on the reserved credit,
// and the connection stays full until the server grants more.
func TestRealHTTP3AttachConn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, p, dial := realQUIC(t, quicmux.ALPNH3, 2)
	release := make(chan struct{})
	arrived := make(chan struct{}, 16)
	hs := &http3.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "ok")
	})}
	defer hs.Close()
	go func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go hs.ServeQUICConn(c.QUIC())
		}
	}()
	var (
		mu      sync.Mutex
		clients = map[mux.Conn]*h3.Client{}
	)
	pool, err := reuse.New(reuse.Config{
		Policy: reuse.PolicyAlways,
		Dial: func(ctx context.Context, p reuse.Params) (mux.Conn, error) {
			c, err := dial(ctx, p)
			if err != nil {
				return nil, err
			}
			h, err := h3.NewClient(c, nil)
			if err != nil {
				c.Close()
				return nil, err
			}
			mu.Lock()
			clients[c] = h
			mu.Unlock()
			return c, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w := pool.Worker(0)

	attach := func() reuse.Lease {
		t.Helper()
		l, err := w.AttachConn(ctx, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if l.Stream() != nil {
			t.Fatal("AttachConn lease with a stream")
		}
		return l
	}
	// send runs one request of l; its result arrives on the channel.
	send := func(l reuse.Lease) <-chan error {
		mu.Lock()
		h := clients[l.Conn()]
		mu.Unlock()
		res := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://backend.lab/", nil)
			rsp, err := h.RoundTrip(req)
			if err == nil {
				_, err = io.Copy(io.Discard, rsp.Body)
				rsp.Body.Close()
			}
			l.Done(err)
			res <- err
		}()
		return res
	}
	l1, l2 := attach(), attach()
	c1 := l1.Conn()
	if l2.Conn() != c1 {
		t.Fatal("second lease not on the connection with credit left")
	}
	if c1.AvailStreams() != 2 {
		t.Fatalf("AttachConn opened streams: avail %d", c1.AvailStreams())
	}
	l3 := attach() // c1's credit is all reserved: dial, even though it reports 2
	if l3.Conn() == c1 {
		t.Fatal("connection with all its credit reserved handed out")
	}
	wait := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-arrived:
			case <-ctx.Done():
				t.Fatal("a request did not reach the server: it waited for stream credit")
			}
		}
	}
	r1, r2, r3 := send(l1), send(l2), send(l3)
	wait(3) // every request opened its stream without waiting for credit
	if c1.AvailStreams() != 0 || c1.UsedStreams() != 2 {
		t.Fatalf("c1 avail %d used %d with both requests in flight", c1.AvailStreams(), c1.UsedStreams())
	}
	l4 := attach()
	if l4.Conn() == c1 {
		t.Fatal("full connection handed out")
	}
	r4 := send(l4)
	wait(1)
	close(release)
	for _, r := range []<-chan error{r1, r2, r3, r4} {
		if err := <-r; err != nil {
			t.Fatal(err)
		}
	}
	if st := pool.Stats(); st.Leases != 0 || st.OpenErrors != 0 || st.Dials != 2 {
		t.Fatalf("stats %+v", st)
	}
}
