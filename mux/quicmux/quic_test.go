package quicmux

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"time"

	"github.com/quic-go/quic-go"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/internal/testenv"
)

// labCert is one self-signed certificate shared by the package's tests
// (generating one per test costs more than most tests).
var labCert = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	cert, pool, err := SelfSigned([]string{"backend.lab", "127.0.0.1"}, time.Hour)
	if err != nil {
		panic(err)
	}
	return cert, pool
})

// sockets makes the tests' sockets. The default is kernel loopback; tests
// over the netstack pair or the lab replace it (see stack_test.go).
var sockets = testenv.Kernel()

func packetPair(t testing.TB) (client, server net.PacketConn) {
	t.Helper()
	return sockets.PacketPair(t)
}

// newTransport runs a transport on pc until the test ends.
func newTransport(t testing.TB, pc net.PacketConn, cfg Config) *Transport {
	tr := NewTransport(pc, cfg)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// quicPair dials a client Conn to a server Conn.
func quicPair(t testing.TB, alpn string, srvCfg, cliCfg Config) (cli, srv *Conn) {
	t.Helper()
	cli, srv, _ = quicPairTransport(t, alpn, srvCfg, cliCfg)
	return cli, srv
}

// quicPairTransport is quicPair that also returns the client's transport.
func quicPairTransport(t testing.TB, alpn string, srvCfg, cliCfg Config) (cli, srv *Conn, ctr *Transport) {
	t.Helper()
	cpc, spc := packetPair(t)
	cert, pool := labCert()
	ln, err := newTransport(t, spc, srvCfg).Listen(ServerTLS(cert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	ctr = newTransport(t, cpc, cliCfg)
	cli, err = ctr.Dial(ctx, spc.LocalAddr(), ClientTLS("backend.lab", pool, alpn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	srv = <-accepted
	if srv == nil {
		t.FailNow()
	}
	t.Cleanup(func() { srv.Close() })
	return cli, srv, ctr
}

// echoStreams serves every stream of c by echoing it until EOF.
func echoStreams(t testing.TB, c *Conn) {
	go func() {
		for {
			s, err := c.AcceptStream(context.Background())
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

func TestQUICStreamEcho(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv := quicPair(t, ALPNRaw, Config{}, Config{})
	echoStreams(t, srv)
	if cli.Kind() != mux.KindQUIC || cli.ALPN() != ALPNRaw || !cli.Alive() {
		t.Fatalf("kind %v alpn %q alive %v", cli.Kind(), cli.ALPN(), cli.Alive())
	}
	if got := cli.AvailStreams(); got != defaultReadyStreams {
		t.Fatalf("AvailStreams = %d, want the default ready streams %d (the peer allows 100)", got, defaultReadyStreams)
	}
	ctx := context.Background()
	s, err := cli.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cli.UsedStreams() != 1 {
		t.Fatalf("UsedStreams = %d, want 1", cli.UsedStreams())
	}
	echoThrough(t, s, bytes.Repeat([]byte("xdpnet"), 10000))
	testenv.WaitFor(t, "stream ends", func() bool { return cli.UsedStreams() == 0 })
	if err := cli.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// echoThrough writes msg on s, closes its write side, and checks that the
// peer (echoStreams) sends msg back whole.
func echoThrough(t *testing.T, s mux.Stream, msg []byte) {
	t.Helper()
	go func() {
		s.Write(msg)
		s.CloseWrite()
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo returned %d bytes, want the %d sent", len(got), len(msg))
	}
}

// TestQUICCreditExhaustedThenRaised: with a peer that allows more streams
// than ReadyStreams, AvailStreams opens that many ahead and counts them
// until the credit runs out; then OpenStream waits, and a MAX_STREAMS frame
// brings a credit notification and credit. Streams are handed out lowest id
// first (RFC 9000 section 3.2: the peer opens lower ids implicitly).
func TestQUICCreditExhaustedThenRaised(t *testing.T) {
	testenv.CheckGoroutines(t)
	const ready, limit = 4, 10
	cli, srv := quicPair(t, ALPNRaw, Config{MaxIncomingStreams: limit}, Config{ReadyStreams: ready})
	w := testenv.NewWatcher()
	cli.SetWatcher(w)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := cli.AvailStreams(); got != ready {
		t.Fatalf("AvailStreams = %d, want ReadyStreams %d", got, ready)
	}
	var streams []mux.Stream
	open := func(n int) {
		t.Helper()
		for range n {
			s, err := cli.OpenStream(ctx)
			if err != nil {
				t.Fatalf("stream %d: %v", len(streams), err)
			}
			if want := uint64(4 * len(streams)); s.ID() != want {
				t.Fatalf("stream %d has id %d, want %d", len(streams), s.ID(), want)
			}
			// The peer only learns of a stream from its first frame.
			if _, err := s.Write([]byte{byte(len(streams))}); err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
	}
	open(ready + 1)
	if got := cli.AvailStreams(); got != ready {
		t.Fatalf("AvailStreams = %d after opening %d, want %d", got, ready+1, ready)
	}
	open(ready)
	if got := cli.AvailStreams(); got != limit-2*ready-1 {
		t.Fatalf("AvailStreams = %d, want the last %d of the credit", got, limit-2*ready-1)
	}
	open(limit - 2*ready - 1)
	if got := cli.AvailStreams(); got != 0 {
		t.Fatalf("AvailStreams = %d after using the credit, want 0", got)
	}
	notified := w.Credit.Load()
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := cli.OpenStream(short)
	cancelShort()
	if !errors.Is(err, mux.ErrNoCredit) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OpenStream without credit: %v, want mux.ErrNoCredit wrapping the deadline", err)
	}
	// The server finishes one stream in both directions: quic-go then
	// raises MAX_STREAMS by one.
	ss, err := srv.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	streams[0].CloseWrite()
	io.ReadAll(ss)
	ss.Close()
	io.ReadAll(streams[0])
	testenv.WaitFor(t, "credit notification", func() bool { return w.Credit.Load() > notified })
	if got := cli.AvailStreams(); got != 1 {
		t.Fatalf("AvailStreams = %d after MAX_STREAMS, want 1", got)
	}
	s, err := cli.OpenStream(ctx)
	if err != nil {
		t.Fatalf("OpenStream with credit: %v", err)
	}
	s.Close()
	for _, s := range streams[1:] {
		s.Close()
	}
}

// TestQUICPeerGrantsNoStreams: a peer that allows no bidirectional streams
// (MAX_STREAMS 0) leaves AvailStreams at 0 and OpenStream waiting until its
// context ends; the goroutine waiting for credit ends with the connection.
func TestQUICPeerGrantsNoStreams(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, _ := quicPair(t, ALPNRaw, Config{MaxIncomingStreams: -1}, Config{})
	if got := cli.AvailStreams(); got != 0 {
		t.Fatalf("AvailStreams = %d, want 0", got)
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := cli.OpenStream(short); !errors.Is(err, mux.ErrNoCredit) {
		t.Fatalf("OpenStream: %v, want mux.ErrNoCredit", err)
	}
	if err := cli.Ping(context.Background()); err != nil {
		t.Fatalf("Ping needs no bidirectional credit: %v", err)
	}
}

// TestQUICPingRaw: on a raw-ALPN connection Ping's answer is the peer's
// STOP_SENDING. A quic-go peer that runs StopUniStreams answers; one that
// never accepts unidirectional streams does not, and Ping ends with its
// context.
func TestQUICPingRaw(t *testing.T) {
	testenv.CheckGoroutines(t)
	for _, answers := range []bool{true, false} {
		t.Run(fmt.Sprintf("answers=%v", answers), func(t *testing.T) {
			cpc, spc := packetPair(t)
			cert, pool := labCert()
			str := &quic.Transport{Conn: spc}
			defer str.Close()
			ln, err := str.Listen(ServerTLS(cert, ALPNRaw), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cli, err := newTransport(t, cpc, Config{}).Dial(ctx, spc.LocalAddr(), ClientTLS("backend.lab", pool, ALPNRaw))
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			qc, err := ln.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if answers {
				go StopUniStreams(qc)
			}
			short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancelShort()
			err = cli.Ping(short)
			if answers && err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if !answers && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Ping to a peer that never answers: %v, want the deadline", err)
			}
		})
	}
}

// TestQUICTraceOneRecorder: an HTTP/3 client connection's trace, which
// quic-go's HTTP/3 layer finds through QlogTrace, gives no recorder beyond
// the connection's own, and the connection's credit stays tracked. Raw and
// server connections have no trace at all.
func TestQUICTraceOneRecorder(t *testing.T) {
	raw, srv := quicPair(t, ALPNRaw, Config{}, Config{})
	if raw.QUIC().QlogTrace() != nil || srv.QUIC().QlogTrace() != nil {
		t.Fatal("a raw-ALPN connection has a qlog trace")
	}
	cli, _ := quicPair(t, ALPNH3, Config{MaxIncomingStreams: 7}, Config{})
	tr := cli.QUIC().QlogTrace()
	if tr == nil {
		t.Fatal("connection without a trace")
	}
	if r := tr.AddProducer(); r != nil {
		t.Fatalf("a later producer got recorder %T", r)
	}
	if got := cli.AvailStreams(); got != 7 {
		t.Fatalf("AvailStreams = %d, want 7", got)
	}
}

// TestQUICManyStreams runs 10,000 streams (1,000 with -short) with
// verified data over one connection whose peer allows 100 at a time, so
// the credit is used up and returned many times.
func TestQUICManyStreams(t *testing.T) {
	testenv.CheckGoroutines(t)
	n := 10000
	if testing.Short() {
		n = 1000
	}
	cli, srv := quicPair(t, ALPNRaw, Config{}, Config{ReadyStreams: 100})
	echoStreams(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const workers = 64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				msg := fmt.Appendf(nil, "stream %d of %d", i, n)
				if err := testenv.RoundTrip(ctx, cli, msg); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "streams to end", func() bool { return cli.UsedStreams() == 0 })
	// The peer returns credit as streams complete: all of it comes back.
	testenv.WaitFor(t, "credit to return", func() bool { return cli.AvailStreams() == 100 })
}

func TestQUICShutdownDrains(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv := quicPair(t, ALPNRaw, Config{}, Config{})
	echoStreams(t, srv)
	w := testenv.NewWatcher()
	cli.SetWatcher(w)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Streams opened ahead are not in use: Shutdown does not wait for them.
	if cli.AvailStreams() != defaultReadyStreams {
		t.Fatalf("AvailStreams = %d, want %d ready", cli.AvailStreams(), defaultReadyStreams)
	}
	s, err := cli.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() { shut <- cli.Shutdown(ctx) }()
	testenv.WaitFor(t, "shutdown to begin", func() bool { return !cli.Alive() })
	if _, err := cli.OpenStream(ctx); !errors.Is(err, mux.ErrGoingAway) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("OpenStream during shutdown: %v, want mux.ErrGoingAway", err)
	}
	if cli.AvailStreams() != 0 {
		t.Fatal("AvailStreams > 0 during shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a stream open", err)
	default:
	}
	msg := []byte("finishing")
	s.Write(msg)
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("stream during shutdown: %q, %v", got, err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-w.Dead; !errors.Is(err, mux.ErrGoingAway) {
		t.Fatalf("ConnDead with %v, want mux.ErrGoingAway", err)
	}
	// The server sees the connection closed without error.
	<-srv.Done()
}

func TestQUICShutdownDeadlineClosesHard(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, _ := quicPair(t, ALPNRaw, Config{}, Config{})
	s, err := cli.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := cli.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an ended context: %v", err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after a hard close: %v, want net.ErrClosed", err)
	}
}

func TestQUICGarbageDatagrams(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv := quicPair(t, ALPNRaw, Config{}, Config{})
	echoStreams(t, srv)
	junk, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	// Short junk, a long-header lookalike, an oversize datagram.
	for _, d := range [][]byte{{0}, []byte("GET / HTTP/1.1\r\n"), append([]byte{0xc0, 0, 0, 0, 1}, make([]byte, 1300)...), make([]byte, 9000)} {
		for _, to := range []net.Addr{srv.LocalAddr(), cli.LocalAddr()} {
			if _, err := junk.WriteTo(d, to); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := testenv.RoundTrip(ctx, cli, []byte("still fine")); err != nil {
		t.Fatal(err)
	}
	if !cli.Alive() || !srv.Alive() {
		t.Fatal("garbage killed a connection")
	}
}

func TestQUICPeerResetsStream(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv := quicPair(t, ALPNRaw, Config{}, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := cli.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("hello"))
	ss, err := srv.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	qs := ss.(*quicStream).s
	qs.CancelWrite(7)
	qs.CancelRead(7)
	_, err = io.ReadAll(s)
	var serr *quic.StreamError
	if !errors.As(err, &serr) || serr.ErrorCode != 7 || !serr.Remote {
		t.Fatalf("read after the peer's reset: %v, want a remote StreamError 7", err)
	}
	// Reset in both directions: a write fails too and the stream ends.
	testenv.WaitFor(t, "write to fail", func() bool {
		_, err := s.Write([]byte("x"))
		return errors.As(err, &serr)
	})
	s.Close()
	testenv.WaitFor(t, "stream to end", func() bool { return cli.UsedStreams() == 0 })
}

func TestQUICIdleTimeout(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv := quicPair(t, ALPNRaw, Config{IdleTimeout: 200 * time.Millisecond, KeepAlive: -1}, Config{KeepAlive: -1})
	w := testenv.NewWatcher()
	srv.SetWatcher(w)
	var idle *quic.IdleTimeoutError
	err := <-w.Dead
	if !errors.As(err, &idle) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ConnDead with %v, want an idle timeout", err)
	}
	if !errors.As(srv.Err(), &idle) || srv.Alive() || srv.AvailStreams() != 0 {
		t.Fatalf("after idle timeout: Err %v Alive %v Avail %d", srv.Err(), srv.Alive(), srv.AvailStreams())
	}
	if _, err := srv.OpenStream(context.Background()); !errors.As(err, &idle) {
		t.Fatalf("OpenStream on a dead connection: %v", err)
	}
	// The client's idle timeout is the minimum of both: it died too.
	<-cli.Done()
}

func TestQUICKeepAliveKeepsIdleConnection(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv := quicPair(t, ALPNRaw, Config{IdleTimeout: 300 * time.Millisecond}, Config{KeepAlive: 50 * time.Millisecond})
	timer := time.NewTimer(time.Second) // several idle timeouts
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-cli.Done():
		t.Fatalf("client died: %v", cli.Err())
	case <-srv.Done():
		t.Fatalf("server died: %v", srv.Err())
	}
}

func TestQUICPeerCloses(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv := quicPair(t, ALPNRaw, Config{}, Config{})
	w := testenv.NewWatcher()
	cli.SetWatcher(w)
	srv.QUIC().CloseWithError(42, "backend going down")
	err := <-w.Dead
	var aerr *quic.ApplicationError
	if !errors.As(err, &aerr) || aerr.ErrorCode != 42 || !aerr.Remote {
		t.Fatalf("ConnDead with %v, want the peer's application error 42", err)
	}
	if _, err := cli.OpenStream(context.Background()); !errors.As(err, &aerr) {
		t.Fatalf("OpenStream after the peer closed: %v", err)
	}
	if err := cli.Ping(context.Background()); err == nil {
		t.Fatal("Ping on a dead connection succeeded")
	}
}

func TestQUICHandshakeFailures(t *testing.T) {
	testenv.CheckGoroutines(t)
	cert, pool := labCert()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Run("alpn", func(t *testing.T) {
		cpc, spc := packetPair(t)
		ln, err := newTransport(t, spc, Config{}).Listen(ServerTLS(cert, ALPNH3))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go ln.Accept(ctx)
		_, err = newTransport(t, cpc, Config{}).Dial(ctx, spc.LocalAddr(), ClientTLS("backend.lab", pool, ALPNRaw))
		var terr *quic.TransportError
		if !errors.As(err, &terr) {
			t.Fatalf("dial with an ALPN the server lacks: %v, want a TLS alert", err)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		cpc, spc := packetPair(t)
		ln, err := newTransport(t, spc, Config{}).Listen(ServerTLS(cert))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go ln.Accept(ctx)
		_, err = newTransport(t, cpc, Config{}).Dial(ctx, spc.LocalAddr(), ClientTLS("backend.lab", x509.NewCertPool(), ALPNRaw))
		if err == nil {
			t.Fatal("dial to an untrusted server succeeded")
		}
	})
	t.Run("no server", func(t *testing.T) {
		cpc, spc := packetPair(t)
		spc.Close()
		_, err := newTransport(t, cpc, Config{HandshakeTimeout: 200 * time.Millisecond}).Dial(ctx, spc.LocalAddr(), ClientTLS("backend.lab", pool, ALPNRaw))
		var herr *quic.IdleTimeoutError
		if !errors.As(err, &herr) && !errors.Is(err, net.ErrClosed) {
			t.Fatalf("dial to nobody: %v, want a handshake timeout", err)
		}
	})
	t.Run("no alpn", func(t *testing.T) {
		cpc, spc := packetPair(t)
		defer cpc.Close()
		defer spc.Close()
		if _, err := newTransport(t, cpc, Config{}).Dial(ctx, spc.LocalAddr(), &tls.Config{}); err == nil {
			t.Fatal("dial without ALPN accepted")
		}
	})
}

// TestQUICAllow0RTTListener checks that a listener accepting 0-RTT (which
// hands out connections before the handshake completes) serves ordinary
// connections with the same credit accounting.
func TestQUICAllow0RTTListener(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv := quicPair(t, ALPNRaw, Config{Allow0RTT: true, MaxIncomingStreams: 7}, Config{})
	echoStreams(t, srv)
	if got := cli.AvailStreams(); got != 7 {
		t.Fatalf("AvailStreams = %d, want 7", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := testenv.RoundTrip(ctx, cli, []byte("early listener")); err != nil {
		t.Fatal(err)
	}
}

// stallConn is a socket whose writes can be made to block until their
// write deadline, like a netstack socket whose send buffer stays full.
type stallConn struct {
	net.PacketConn
	stalled  atomic.Bool
	closed   chan struct{}
	mu       sync.Mutex
	deadline time.Time
}

func (s *stallConn) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	return nil
}

func (s *stallConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !s.stalled.Load() {
		return s.PacketConn.WriteTo(b, addr)
	}
	s.mu.Lock()
	d := s.deadline
	s.mu.Unlock()
	var expired <-chan time.Time
	if !d.IsZero() {
		timer := time.NewTimer(time.Until(d))
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	case <-s.closed:
		return 0, net.ErrClosed
	}
}

func (s *stallConn) Close() error {
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	return s.PacketConn.Close()
}

// TestQUICBlockedSocketDoesNotHang: a socket whose writes block for good
// must not hang the connection: datagrams are dropped after a bounded
// wait, and Close returns.
func TestQUICBlockedSocketDoesNotHang(t *testing.T) {
	testenv.CheckGoroutines(t)
	kpc, spc := packetPair(t)
	cpc := &stallConn{PacketConn: kpc, closed: make(chan struct{})}
	cert, pool := labCert()
	ln, err := newTransport(t, spc, Config{}).Listen(ServerTLS(cert))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		if c, err := ln.Accept(ctx); err == nil {
			echoStreams(t, c)
		}
	}()
	ctr := newTransport(t, cpc, Config{})
	cli, err := ctr.Dial(ctx, spc.LocalAddr(), ClientTLS("backend.lab", pool, ALPNRaw))
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.RoundTrip(ctx, cli, []byte("before the stall")); err != nil {
		t.Fatal(err)
	}
	cpc.stalled.Store(true)
	s, err := cli.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("into a blocked socket"))
	testenv.WaitFor(t, "a datagram to be dropped", func() bool { return ctr.dropped.Load() > 0 })
	cli.Close()
	<-cli.Done()
}

// errConn is a socket whose next read returns a given error, as a
// connected UDP socket does after an ICMP message.
type errConn struct {
	net.PacketConn
	next atomic.Pointer[error]
}

func (c *errConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if err := c.next.Swap(nil); err != nil {
		return 0, nil, *err
	}
	return c.PacketConn.ReadFrom(b)
}

// TestQUICTransportSurvivesUnreachable: an ICMP error on the socket (an
// origin restarting, a closed port) must not end the transport, whose
// later dials would all fail at once; a socket that fails for good makes
// Err say the transport must be replaced.
func TestQUICTransportSurvivesUnreachable(t *testing.T) {
	testenv.CheckGoroutines(t)
	kpc, spc := packetPair(t)
	cpc := &errConn{PacketConn: kpc}
	cert, pool := labCert()
	ln, err := newTransport(t, spc, Config{}).Listen(ServerTLS(cert))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			echoStreams(t, c)
		}
	}()
	tr := NewTransport(cpc, Config{})
	defer tr.Close()
	notified := tr.UnreachableNotify()
	for _, e := range []error{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		err := error(&net.OpError{Op: "read", Net: "udp", Err: e})
		cpc.next.Store(&err)
		c, err := tr.Dial(ctx, spc.LocalAddr(), ClientTLS("backend.lab", pool, ALPNRaw))
		if err != nil {
			t.Fatalf("dial after %v: %v", e, err)
		}
		if err := testenv.RoundTrip(ctx, c, []byte("after an ICMP error")); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if got := tr.unreachable.Load(); got != 3 {
		t.Errorf("Unreachable = %d, want 3", got)
	}
	select {
	case <-notified:
	default:
		t.Error("UnreachableNotify's channel not closed by the ICMP errors")
	}
	if err := tr.Err(); err != nil {
		t.Fatalf("Err after ICMP errors = %v, want nil", err)
	}
	fatal := error(&net.OpError{Op: "read", Net: "udp", Err: syscall.EBADF})
	cpc.next.Store(&fatal)
	// The read loop picks the error up with the next datagram.
	c, err := tr.Dial(ctx, spc.LocalAddr(), ClientTLS("backend.lab", pool, ALPNRaw))
	if err == nil {
		c.Close()
	}
	testenv.WaitFor(t, "Err to report the failed socket", func() bool { return errors.Is(tr.Err(), syscall.EBADF) })
	tr.Close()
	if !errors.Is(tr.Err(), net.ErrClosed) {
		t.Errorf("Err after Close = %v, want net.ErrClosed", tr.Err())
	}
}

// TestQUICStreamResetUnblocksWrite: Reset from another goroutine ends a
// Write blocked on a peer that stopped reading, and the peer sees a reset,
// not a clean end of stream.
func TestQUICStreamResetUnblocksWrite(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv := quicPair(t, ALPNRaw, Config{}, Config{MaxStreamReceiveWindow: 64 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := cli.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := s.Write(make([]byte, 16<<20)) // far beyond any window: blocks
		wrote <- err
	}()
	ss, err := srv.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("blocked Write returned no error after Reset")
		}
	case <-ctx.Done():
		t.Fatal("Write still blocked after Reset")
	}
	_, err = io.ReadAll(ss)
	var serr *quic.StreamError
	if !errors.As(err, &serr) || serr.ErrorCode != rawCancelCode {
		t.Fatalf("peer read %v, want a StreamError with rawCancelCode", err)
	}
	ss.Close()
	testenv.WaitFor(t, "stream to end", func() bool { return cli.UsedStreams() == 0 })
}
