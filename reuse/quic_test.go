package reuse_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/reuse"
)

// TestRealQUICCreditReentry runs the pool on the real QUIC mux (quic-go over
// loopback UDP) against a server granting 2 concurrent streams: a third
// request opens a second connection instead of blocking, and when a stream
// ends the server's MAX_STREAMS frame puts the first connection back into
// avail while its other stream is still open.
func TestRealQUICCreditReentry(t *testing.T) {
	if testing.Short() {
		t.Skip("real QUIC handshakes; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert, roots, err := mux.SelfSigned([]string{"backend.lab"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	spc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := mux.ListenQUIC(spc, mux.ServerTLS(cert, mux.ALPNRaw), mux.Config{MaxIncomingStreams: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
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
	srvAddr := ln.Addr()
	pool, err := reuse.New(reuse.Config{
		Policy: reuse.PolicyAlways,
		Dial: func(ctx context.Context, p reuse.Params) (mux.Conn, error) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			return mux.DialQUIC(ctx, pc, net.UDPAddrFromAddrPort(p.Dst), mux.ClientTLS(p.SNI, roots, p.ALPN), mux.Config{})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w := pool.Worker(0)
	p := &reuse.Params{Server: "b/s1", Kind: mux.KindQUIC, Dst: srvAddr.(*net.UDPAddr).AddrPort(), SNI: "backend.lab", ALPN: mux.ALPNRaw}
	p.Dst = netip.AddrPortFrom(p.Dst.Addr().Unmap(), p.Dst.Port())

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
	if err := pool.Drain(ctx, "b/s1"); err != nil {
		t.Fatal(err)
	}
	if st := pool.Stats(); st.Conns != 0 || st.Dials != 2 || st.Leases != 0 {
		t.Fatalf("stats %+v", st)
	}
}
