package quicmux

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xdpnet/xdpnet/mux/internal/testenv"
)

// gatedConn holds back every datagram it receives until open is closed:
// a client behind it sends its first flight, 0-RTT included, and hears
// nothing back, so its handshake cannot complete while the test looks.
type gatedConn struct {
	net.PacketConn
	open, closed chan struct{}
}

func (g *gatedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case <-g.open:
	case <-g.closed:
		return 0, nil, net.ErrClosed
	}
	return g.PacketConn.ReadFrom(b)
}

func (g *gatedConn) Close() error {
	close(g.closed)
	return g.PacketConn.Close()
}

// earlyServer listens for h3 connections with 0-RTT allowed and a stream
// limit of streams on a fresh socket (with its own TLS session ticket
// keys), accepting connections until the test ends.
func earlyServer(t *testing.T, streams int64) net.Addr {
	t.Helper()
	_, spc := packetPair(t)
	cert, _ := labCert()
	ln, err := newTransport(t, spc, Config{Allow0RTT: true, MaxIncomingStreams: streams}).Listen(ServerTLS(cert, ALPNH3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return spc.LocalAddr()
}

// TestQUICDialEarly: with a ticket from the server, DialEarly returns
// before the handshake; the connection's stream credit is the limit
// remembered with the ticket (exact for reuse/ before the server said
// anything), and the handshake completes with the early data accepted.
// With a ticket the server cannot use (another server's keys), the early
// data is rejected and the connection closes with quic.Err0RTTRejected.
func TestQUICDialEarly(t *testing.T) {
	testenv.CheckGoroutines(t)
	const limit = 7
	_, pool := labCert()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tickets := tls.NewLRUClientSessionCache(1)
	tlsConf := func() *tls.Config {
		c := ClientTLS("backend.lab", pool, ALPNH3)
		c.ClientSessionCache = tickets
		return c
	}
	srv := earlyServer(t, limit)
	cpc, _ := packetPair(t)
	first, err := newTransport(t, cpc, Config{}).DialEarly(ctx, srv, tlsConf())
	if err != nil {
		t.Fatal(err)
	}
	if first.Early() || first.Resumed() {
		t.Fatalf("first dial without a ticket: early %v, resumed %v; want a full handshake", first.Early(), first.Resumed())
	}
	testenv.WaitFor(t, "a session ticket", func() bool { _, ok := tickets.Get("backend.lab"); return ok })
	first.Close()

	dialGated := func(srv net.Addr) (*Conn, *gatedConn) {
		t.Helper()
		cpc, _ := packetPair(t)
		g := &gatedConn{PacketConn: cpc, open: make(chan struct{}), closed: make(chan struct{})}
		c, err := newTransport(t, g, Config{}).DialEarly(ctx, srv, tlsConf())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if !c.Early() {
			t.Fatal("DialEarly with a ticket returned after the handshake")
		}
		return c, g
	}

	c, g := dialGated(srv)
	if got := c.AvailStreams(); got != limit {
		t.Fatalf("AvailStreams before the handshake = %d, want the remembered limit %d", got, limit)
	}
	credit := c.H3Credit()
	if err := credit.Reserve(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := c.QUIC().OpenStream()
	if err != nil {
		t.Fatalf("0-RTT stream within the credit: %v", err)
	}
	if _, err := s.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	if got := c.AvailStreams(); got != limit-1 {
		t.Fatalf("AvailStreams = %d after one early stream, want %d", got, limit-1)
	}
	close(g.open)
	select {
	case <-c.HandshakeComplete():
	case <-ctx.Done():
		t.Fatal("handshake did not complete")
	}
	if !c.Resumed() || !c.QUIC().ConnectionState().Used0RTT || c.Rejected0RTT(nil) {
		t.Fatalf("resumed %v, 0-RTT used %v, rejected %v; want resumed with 0-RTT accepted", c.Resumed(), c.QUIC().ConnectionState().Used0RTT, c.Rejected0RTT(nil))
	}
	if got := c.AvailStreams(); got != limit-1 {
		t.Fatalf("AvailStreams after the handshake = %d, want %d", got, limit-1)
	}
	s.CancelWrite(0)
	s.CancelRead(0)
	credit.StreamEnded()

	// Another server has other ticket keys: the ticket is useless there.
	other := earlyServer(t, limit)
	r, g := dialGated(other)
	close(g.open)
	select {
	case <-r.Done():
	case <-ctx.Done():
		t.Fatal("connection whose early data was rejected is still open")
	}
	if !errors.Is(r.Err(), quic.Err0RTTRejected) || !r.Rejected0RTT(nil) {
		t.Fatalf("closed with %v (rejected %v), want quic.Err0RTTRejected", r.Err(), r.Rejected0RTT(nil))
	}
}

// BenchmarkQUICDialResumed compares a full HTTP/3 handshake with one that
// resumes a session from a ticket (what every backend dial does once the
// server issued one), over kernel loopback: the client skips the
// certificate chain's verification, the server its signature. cpu-µs/op
// is the process's CPU time (both ends, and the ticket dials when
// resuming) per dial.
func BenchmarkQUICDialResumed(b *testing.B) {
	_, spc := packetPair(b)
	cert, pool := labCert()
	ln, err := newTransport(b, spc, Config{}).Listen(ServerTLS(cert, ALPNH3))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() { <-c.Done() }()
		}
	}()
	cpc, _ := packetPair(b)
	tr := newTransport(b, cpc, Config{})
	for _, resume := range []bool{false, true} {
		name := "full"
		tickets := tls.NewLRUClientSessionCache(1)
		if resume {
			name = "resumed"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			cpu := testenv.CPUTime()
			for b.Loop() {
				conf := ClientTLS("backend.lab", pool, ALPNH3)
				if resume {
					conf.ClientSessionCache = tickets
					if _, ok := tickets.Get("backend.lab"); !ok {
						b.StopTimer()
						c, err := tr.Dial(ctx, spc.LocalAddr(), conf)
						if err != nil {
							b.Fatal(err)
						}
						testenv.WaitFor(b, "a session ticket", func() bool { _, ok := tickets.Get("backend.lab"); return ok })
						c.Close()
						b.StartTimer()
					}
				}
				c, err := tr.Dial(ctx, spc.LocalAddr(), conf)
				if err != nil {
					b.Fatal(err)
				}
				if c.Resumed() != resume {
					b.Fatalf("resumed %v, want %v", c.Resumed(), resume)
				}
				c.Close()
			}
			b.ReportMetric(float64((testenv.CPUTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
