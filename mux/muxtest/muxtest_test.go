package muxtest_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/muxtest"
)

type events struct {
	mu     sync.Mutex
	credit int
	dead   []error
}

func (e *events) StreamCredit(mux.Conn) { e.mu.Lock(); e.credit++; e.mu.Unlock() }
func (e *events) ConnDead(_ mux.Conn, err error) {
	e.mu.Lock()
	e.dead = append(e.dead, err)
	e.mu.Unlock()
}

func TestCreditAndGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := muxtest.NewConn(muxtest.Options{MaxStreams: 1})
		ev := &events{}
		c.SetWatcher(ev)
		s1, err := c.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if c.AvailStreams() != 0 || c.UsedStreams() != 1 {
			t.Fatalf("avail %d used %d", c.AvailStreams(), c.UsedStreams())
		}
		// No credit: OpenStream waits until ctx ends.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := c.OpenStream(ctx); !errors.Is(err, mux.ErrNoCredit) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
		// A waiter is woken by a grant.
		got := make(chan error, 1)
		go func() {
			_, err := c.OpenStream(context.Background())
			got <- err
		}()
		synctest.Wait()
		c.Grant(1)
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		if ev.credit != 1 {
			t.Fatalf("%d credit events", ev.credit)
		}
		// Without AutoCredit a finished stream returns no credit.
		s1.Close()
		if c.AvailStreams() != 0 || c.UsedStreams() != 1 || ev.credit != 1 {
			t.Fatalf("avail %d used %d credit events %d", c.AvailStreams(), c.UsedStreams(), ev.credit)
		}
		if s1.ID() != 0 || c.Opened() != 2 {
			t.Fatalf("id %d opened %d", s1.ID(), c.Opened())
		}
	})
}

func TestAutoCreditAndRecycle(t *testing.T) {
	c := muxtest.NewConn(muxtest.Options{MaxStreams: 1, AutoCredit: true, RecycleStreams: true})
	ev := &events{}
	c.SetWatcher(ev)
	for i := range 3 {
		s, err := c.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s.ID() != uint64(4*i) {
			t.Fatalf("stream id %d", s.ID())
		}
		if _, err := s.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read: %v", err)
		}
		s.Close()
		if err := s.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second close: %v", err)
		}
	}
	if ev.credit != 3 || c.AvailStreams() != 1 {
		t.Fatalf("credit events %d avail %d", ev.credit, c.AvailStreams())
	}
}

func TestKillAndShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := muxtest.NewConn(muxtest.Options{MaxStreams: 10})
		ev := &events{}
		c.SetWatcher(ev)
		s, _ := c.OpenStream(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Shutdown(context.Background()) }()
		synctest.Wait()
		if c.Alive() || c.AvailStreams() != 0 || !c.IsShutdown() || c.Dead() {
			t.Fatal("shutting down connection still takes streams, or died early")
		}
		if _, err := c.OpenStream(context.Background()); !errors.Is(err, mux.ErrGoingAway) {
			t.Fatalf("open while going away: %v", err)
		}
		s.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		<-c.Done()
		if !errors.Is(c.Err(), net.ErrClosed) || len(ev.dead) != 1 {
			t.Fatalf("err %v, %d death events", c.Err(), len(ev.dead))
		}

		k := muxtest.NewConn(muxtest.Options{MaxStreams: 1})
		k.SetWatcher(ev)
		boom := errors.New("boom")
		k.Kill(boom)
		k.Kill(errors.New("again"))
		if _, err := k.OpenStream(context.Background()); err != boom {
			t.Fatalf("open on dead conn: %v", err)
		}
		if err := k.Ping(context.Background()); err != boom {
			t.Fatalf("ping on dead conn: %v", err)
		}
		if len(ev.dead) != 2 {
			t.Fatalf("%d death events", len(ev.dead))
		}
	})
}

func TestPingScript(t *testing.T) {
	c := muxtest.NewConn(muxtest.Options{})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad := errors.New("no ack")
	c.SetPing(bad)
	if err := c.Ping(context.Background()); err != bad {
		t.Fatal(err)
	}
	c.SetPingHook(func(ctx context.Context) error { return ctx.Err() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Ping(ctx); err != context.Canceled {
		t.Fatal(err)
	}
	if c.Pings() != 3 {
		t.Fatalf("%d pings", c.Pings())
	}
}

func TestServe(t *testing.T) {
	c := muxtest.NewConn(muxtest.Options{MaxStreams: 1, Serve: func(peer net.Conn) {
		defer peer.Close()
		io.Copy(peer, peer) // echo
	}})
	s, err := c.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	go s.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	s.Close()
}

func TestClock(t *testing.T) {
	c := muxtest.NewClock(time.Time{})
	t0 := c.Now()
	c.Advance(time.Second)
	if c.Now().Sub(t0) != time.Second {
		t.Fatal("advance")
	}
}
