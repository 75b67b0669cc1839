package framed

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/internal/testenv"
)

// sockets makes the tests' listeners. The default is kernel loopback;
// tests over the netstack pair or the lab replace it (see TestOverNetstack).
var sockets = testenv.Kernel()

func tcpListen(t testing.TB) (net.Listener, DialFunc) {
	t.Helper()
	return sockets.TCPListen(t)
}

// framedServer serves framed connections accepted on ln with handle per
// stream, until the test ends. It returns a function that drops every
// server connection at once (a peer that disappears).
func framedServer(t testing.TB, ln net.Listener, cfg Config, handle func(mux.Stream)) (drop func()) {
	var mu sync.Mutex
	var conns []*Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			fc := New(nc, cfg)
			mu.Lock()
			conns = append(conns, fc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					s, err := fc.AcceptStream(context.Background())
					if err != nil {
						return
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						handle(s)
					}()
				}
			}()
		}
	}()
	drop = func() {
		mu.Lock()
		defer mu.Unlock()
		for _, fc := range conns {
			fc.Close()
		}
		conns = nil
	}
	t.Cleanup(func() {
		ln.Close()
		drop()
		wg.Wait()
	})
	return drop
}

func dialFramed(t testing.TB, dial DialFunc, cfg Config) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, dial, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// socketTests are the tests that run again over the engine's netstack, in
// memory and on AF_XDP.
func socketTests() []testenv.Test {
	return []testenv.Test{
		{Name: "FramedConcurrentVirtualConnections", Fn: TestFramedConcurrentVirtualConnections},
		{Name: "FramedCredit", Fn: TestFramedCredit},
		{Name: "FramedPeerDisappearsAndReconnect", Fn: TestFramedPeerDisappearsAndReconnect},
		{Name: "FramedShutdownDrains", Fn: TestFramedShutdownDrains},
		{Name: "FramedPeerResets", Fn: TestFramedPeerResets},
	}
}

// TestOverNetstack runs the socket-level tests over the engine's netstack,
// and a slow reader there too.
func TestOverNetstack(t *testing.T) {
	testenv.RunOverNetstack(t, &sockets, append(socketTests(),
		testenv.Test{Name: "FramedSlowReaderDoesNotStall", Fn: TestFramedSlowReaderDoesNotStall}))
}

// TestOverAFXDP runs them with the engine's netstack on AF_XDP against TCP
// peers on the kernel in a lab namespace (root only).
func TestOverAFXDP(t *testing.T) { testenv.RunOverAFXDP(t, &sockets, socketTests()) }

func TestFramedConcurrentVirtualConnections(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := tcpListen(t)
	framedServer(t, ln, Config{}, testenv.Echo)
	c := dialFramed(t, dial, Config{StreamWindow: 8 << 10})
	const n = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			// Each message is distinct and larger than a window.
			msg := bytes.Repeat(binary.BigEndian.AppendUint32(nil, uint32(i)), 3000+i)
			if err := testenv.RoundTrip(ctx, c, msg); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "all streams released", func() bool { return c.UsedStreams() == 0 })
	if got := c.AvailStreams(); got != 1024 {
		t.Fatalf("AvailStreams = %d after all streams ended, want 1024", got)
	}
}

func TestFramedCredit(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := tcpListen(t)
	framedServer(t, ln, Config{MaxStreams: 2}, testenv.Echo)
	c := dialFramed(t, dial, Config{})
	w := testenv.NewWatcher()
	c.SetWatcher(w)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := c.AvailStreams(); got != 2 {
		t.Fatalf("AvailStreams = %d, want the peer's 2", got)
	}
	a, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.AvailStreams() != 0 || c.UsedStreams() != 2 {
		t.Fatalf("avail %d used %d, want 0 and 2", c.AvailStreams(), c.UsedStreams())
	}
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = c.OpenStream(short)
	cancelShort()
	if !errors.Is(err, mux.ErrNoCredit) {
		t.Fatalf("OpenStream without credit: %v, want mux.ErrNoCredit", err)
	}
	a.CloseWrite()
	io.ReadAll(a)
	testenv.WaitFor(t, "credit notification", func() bool { return w.Credit.Load() > 0 })
	if got := c.AvailStreams(); got != 1 {
		t.Fatalf("AvailStreams = %d after a stream ended, want 1", got)
	}
	b.Close()
	if err := testenv.RoundTrip(ctx, c, []byte("again")); err != nil {
		t.Fatal(err)
	}
}

func TestFramedDuplicateID(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := tcpListen(t)
	framedServer(t, ln, Config{}, testenv.Echo)
	c := dialFramed(t, dial, Config{})
	ctx := context.Background()
	s, err := c.OpenStreamID(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := c.OpenStreamID(ctx, 7); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("second OpenStreamID(7): %v, want ErrDuplicateID", err)
	}
	if s.ID() != 7 {
		t.Fatalf("ID = %d", s.ID())
	}
}

func TestFramedPeerDisappearsAndReconnect(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := tcpListen(t)
	drop := framedServer(t, ln, Config{}, testenv.Echo)
	c := dialFramed(t, dial, Config{ReconnectBackoff: time.Millisecond, MaxReconnectBackoff: 10 * time.Millisecond, MaxReconnects: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// drop closes the connections the server has accepted: make sure it
	// has this one (the kernel completes a dial before the server's Accept
	// returns; dropping nothing left the streams below waiting for good).
	if err := testenv.RoundTrip(ctx, c, []byte("before the drop")); err != nil {
		t.Fatal(err)
	}
	// Streams mid-transfer when the peer goes away.
	var streams []mux.Stream
	for range 10 {
		s, err := c.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte("half a request")); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	drop()
	for _, s := range streams {
		_, err := io.ReadAll(s)
		if !errors.Is(err, ErrConnLost) {
			t.Fatalf("read on a stream of the lost connection: %v, want ErrConnLost", err)
		}
		s.Close()
	}
	// OpenStream waits for the reconnect and works again.
	if err := testenv.RoundTrip(ctx, c, []byte("after reconnect")); err != nil {
		t.Fatal(err)
	}
	if got := c.Stats().Reconnects; got != 1 {
		t.Fatalf("Reconnects = %d, want 1", got)
	}
	// Now the peer is gone for good: the connection gives up after
	// MaxReconnects and waiters fail with ErrReconnectFailed.
	ln.Close()
	drop()
	testenv.WaitFor(t, "reconnecting to give up", func() bool { return c.Err() != nil })
	_, err := c.OpenStream(ctx)
	if !errors.Is(err, ErrReconnectFailed) {
		t.Fatalf("OpenStream after the peer vanished: %v, want ErrReconnectFailed", err)
	}
	<-c.Done()
	if !errors.Is(c.Err(), ErrReconnectFailed) || c.Alive() {
		t.Fatalf("Err = %v, Alive = %v", c.Err(), c.Alive())
	}
}

// TestFramedSlowReaderDoesNotStall checks that a stream whose reader does
// not read holds at most its window and does not stop other streams.
func TestFramedSlowReaderDoesNotStall(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := tcpListen(t)
	stalled := make(chan mux.Stream, 1)
	framedServer(t, ln, Config{StreamWindow: 16 << 10}, func(s mux.Stream) {
		var b [1]byte
		io.ReadFull(s, b[:])
		if b[0] == 's' {
			stalled <- s // never read again
			return
		}
		s.Write(b[:])
		testenv.Echo(s)
	})
	c := dialFramed(t, dial, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	slow, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	n, err := slow.(ContextWriter).WriteContext(wctx, append([]byte("s"), make([]byte, 1<<20)...))
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) || n > 16<<10+1 {
		t.Fatalf("write to a stalled stream: n=%d err=%v; want at most a window, then the context error", n, err)
	}
	if err := testenv.RoundTrip(ctx, c, []byte("xothers still flow")); err == nil {
		// The handler echoes its first byte, then the rest.
	} else {
		t.Fatal(err)
	}
	(<-stalled).Close()
	slow.Close()
}

func TestFramedBadInput(t *testing.T) {
	hdr := func(typ byte, id, length uint32) []byte {
		b := make([]byte, frameHeaderLen)
		frameHeader{typ: typ, id: id, length: length}.put(b)
		return b
	}
	settings := append(hdr(frameSettings, 0, settingsLen), 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0)
	for _, tc := range []struct {
		name  string
		input []byte
		want  error
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrBadFrame},
		{"oversize", append(settings, hdr(frameData, 1, 1<<30)...), ErrFrameTooLarge},
		{"truncated", append(settings, append(hdr(frameOpen, 1, 100), "short"...)...), io.ErrUnexpectedEOF},
		{"data before settings", hdr(frameOpen, 1, 0), ErrBadFrame},
		{"ping on a stream", hdr(framePing, 3, 8), ErrBadFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testenv.CheckGoroutines(t)
			a, b := net.Pipe()
			c := New(a, Config{})
			defer b.Close()
			go func() {
				// Take the SETTINGS first so that the connection's writer
				// is idle, then send the bad input and end the stream.
				io.ReadFull(b, make([]byte, frameHeaderLen+settingsLen))
				b.Write(tc.input)
				b.Close()
			}()
			_, err := c.AcceptStream(context.Background())
			if !errors.Is(err, tc.want) {
				t.Fatalf("AcceptStream: %v, want %v", err, tc.want)
			}
			if !errors.Is(c.Err(), tc.want) {
				t.Fatalf("Err = %v, want %v", c.Err(), tc.want)
			}
		})
	}
}

func TestFramedIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		go io.Copy(io.Discard, b) // a peer that reads and never answers
		c := New(a, Config{IdleTimeout: 3 * time.Second, KeepAlive: time.Second})
		start := time.Now()
		<-c.Done()
		if !errors.Is(c.Err(), ErrIdleTimeout) || !errors.Is(c.Err(), os.ErrDeadlineExceeded) {
			t.Fatalf("Err = %v, want ErrIdleTimeout", c.Err())
		}
		if d := time.Since(start); d < 3*time.Second || d > 5*time.Second {
			t.Fatalf("idle timeout after %v, want 3s..5s", d)
		}
	})
}

func TestFramedKeepAliveKeepsIdleConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		cfg := Config{IdleTimeout: 3 * time.Second, KeepAlive: time.Second}
		c1, c2 := New(a, cfg), New(b, cfg)
		time.Sleep(time.Minute) // fake time inside the bubble
		if !c1.Alive() || !c2.Alive() {
			t.Fatalf("keep-alive did not keep the connection: %v %v", c1.Err(), c2.Err())
		}
		if err := c1.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		c1.Close()
		c2.Close()
	})
}

func TestFramedShutdownDrains(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := tcpListen(t)
	framedServer(t, ln, Config{}, testenv.Echo)
	c := dialFramed(t, dial, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() { shut <- c.Shutdown(ctx) }()
	testenv.WaitFor(t, "shutdown begins", func() bool { return !c.Alive() })
	if _, err := c.OpenStream(ctx); !errors.Is(err, mux.ErrGoingAway) {
		t.Fatalf("OpenStream during shutdown: %v, want mux.ErrGoingAway", err)
	}
	if c.AvailStreams() != 0 {
		t.Fatal("AvailStreams > 0 during shutdown")
	}
	// The open stream still completes.
	msg := []byte("drained")
	s.Write(msg)
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("stream during shutdown: %q, %v", got, err)
	}
	s.Close()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !errors.Is(c.Err(), mux.ErrGoingAway) {
		t.Fatalf("Err after Shutdown = %v", c.Err())
	}
}

func TestFramedDropWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		// The peer sends SETTINGS, then stops reading: the send queue fills.
		go func() {
			s := make([]byte, frameHeaderLen+settingsLen)
			frameHeader{typ: frameSettings, length: settingsLen}.put(s)
			binary.BigEndian.PutUint32(s[9:], 10)
			binary.BigEndian.PutUint32(s[13:], 1<<20)
			binary.BigEndian.PutUint32(s[17:], 1<<10)
			b.Write(s)
		}()
		c := New(a, Config{SendQueue: 4, DropWhenFull: true, KeepAlive: -1, IdleTimeout: -1})
		defer c.Close()
		s, err := c.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Write(make([]byte, 64<<10))
		if !errors.Is(err, ErrSendQueueFull) {
			t.Fatalf("Write into a full queue: %v, want ErrSendQueueFull", err)
		}
		if c.Stats().Dropped == 0 {
			t.Fatal("drop not counted")
		}
	})
}

func TestFramedPeerResets(t *testing.T) {
	testenv.CheckGoroutines(t)
	ln, dial := tcpListen(t)
	framedServer(t, ln, Config{}, func(s mux.Stream) {
		// Close before the request ended: a RESET, as TCP sends RST.
		var b [1]byte
		io.ReadFull(s, b[:])
		s.Close()
	})
	c := dialFramed(t, dial, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("x"))
	_, err = io.ReadAll(s)
	var rerr *ResetError
	if !errors.As(err, &rerr) || !rerr.Remote || !errors.Is(err, ErrStreamReset) {
		t.Fatalf("read after the peer's reset: %v, want a remote ResetError", err)
	}
	if _, err := s.Write([]byte("y")); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("write after the peer's reset: %v", err)
	}
	s.Close()
	testenv.WaitFor(t, "stream released", func() bool { return c.UsedStreams() == 0 })
	if c.Stats().ResetsReceived == 0 {
		t.Fatal("reset not counted")
	}
	// The connection carries on: a new stream reaches the handler, which
	// closes it early again (a reset, or a FIN if the whole request had
	// arrived: either way no echo).
	if err := testenv.RoundTrip(ctx, c, []byte("next")); err == nil {
		t.Fatal("the closing handler echoed")
	}
	if !c.Alive() {
		t.Fatalf("a stream reset killed the connection: %v", c.Err())
	}
}
