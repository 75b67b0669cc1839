package mux

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// packetPair opens two UDP sockets. The default is kernel loopback; tests
// over the netstack pair replace it (see stack_test.go).
var packetPair = func(t testing.TB) (client, server net.PacketConn) {
	t.Helper()
	a, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	return a, b
}

// quicPair dials a client QUICConn to a server QUICConn.
func quicPair(t testing.TB, alpn string, srvCfg, cliCfg Config) (cli, srv *QUICConn) {
	t.Helper()
	cpc, spc := packetPair(t)
	cert, pool := labCert()
	ln, err := ListenQUIC(spc, ServerTLS(cert), srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *QUICConn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	cli, err = DialQUIC(ctx, cpc, spc.LocalAddr(), ClientTLS("backend.lab", pool, alpn), cliCfg)
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

// echoStreams serves every stream of c by echoing it until EOF.
func echoStreams(t testing.TB, c *QUICConn) {
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
	checkGoroutines(t)
	cli, srv := quicPair(t, ALPNRaw, Config{}, Config{})
	echoStreams(t, srv)
	if cli.Kind() != KindQUIC || cli.ALPN() != ALPNRaw || !cli.Alive() {
		t.Fatalf("kind %v alpn %q alive %v", cli.Kind(), cli.ALPN(), cli.Alive())
	}
	if got := cli.AvailStreams(); got != 100 {
		t.Fatalf("AvailStreams = %d, want the peer's default limit 100", got)
	}
	ctx := context.Background()
	s, err := cli.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cli.UsedStreams() != 1 {
		t.Fatalf("UsedStreams = %d, want 1", cli.UsedStreams())
	}
	msg := bytes.Repeat([]byte("xdpnet"), 10000)
	go func() {
		s.Write(msg)
		s.CloseWrite()
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo returned %d bytes, want %d", len(got), len(msg))
	}
	waitFor(t, "stream ends", func() bool { return cli.UsedStreams() == 0 })
	if err := cli.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// creditWatcher records watcher calls.
type creditWatcher struct {
	credit atomic.Int32
	dead   chan error
}

func newCreditWatcher() *creditWatcher { return &creditWatcher{dead: make(chan error, 1)} }

func (w *creditWatcher) StreamCredit(Conn)          { w.credit.Add(1) }
func (w *creditWatcher) ConnDead(_ Conn, err error) { w.dead <- err }

func TestQUICCreditExhaustedThenRaised(t *testing.T) {
	checkGoroutines(t)
	const limit = 4
	cli, srv := quicPair(t, ALPNRaw, Config{MaxIncomingStreams: limit}, Config{})
	w := newCreditWatcher()
	cli.SetWatcher(w)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := cli.AvailStreams(); got != limit {
		t.Fatalf("AvailStreams = %d, want %d", got, limit)
	}
	var streams []Stream
	for i := range limit {
		s, err := cli.OpenStream(ctx)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		// The peer only learns of a stream from its first frame.
		if _, err := s.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	if got := cli.AvailStreams(); got != 0 {
		t.Fatalf("AvailStreams = %d after using the credit, want 0", got)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := cli.OpenStream(short)
	cancelShort()
	if !errors.Is(err, ErrNoCredit) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OpenStream without credit: %v, want ErrNoCredit wrapping the deadline", err)
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
	waitFor(t, "credit notification", func() bool { return w.credit.Load() > 0 })
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

// waitFor polls cond until it holds; it fails the test after 10s. It is for
// conditions reached through real sockets, where synctest cannot help.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkGoroutines fails the test if goroutines started during it are still
// running once it ended (after its cleanups, polling up to 10s for them to
// exit).
func checkGoroutines(t *testing.T) {
	before := goroutineIDs()
	t.Cleanup(func() {
		var leaked []string
		deadline := time.Now().Add(10 * time.Second)
		for {
			leaked = leaked[:0]
			for id, stack := range goroutineStacks() {
				if !before[id] {
					leaked = append(leaked, stack)
				}
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(leaked) > 0 {
			t.Errorf("%d goroutines leaked, first:\n%s", len(leaked), leaked[0])
		}
	})
}

var _ = fmt.Sprint
