package reuse_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/muxtest"
	"github.com/xdpnet/xdpnet/reuse"
)

// idleConns makes n connections of server s1 on worker 0 go idle one after
// the other, 1ms apart on the clock, and returns them oldest first.
func idleConns(e *env, n int) []mux.Conn {
	e.opts = muxtest.Options{MaxStreams: 1, AutoCredit: true}
	var ls []lease
	for range n {
		ls = append(ls, e.attach(0, params("s1"), nil))
	}
	var cs []mux.Conn
	for _, l := range ls {
		e.clk.Advance(time.Millisecond)
		e.pool.Worker(0).Tick()
		l.Done(nil)
		cs = append(cs, l.Conn())
	}
	return cs
}

func (e *env) tick(d time.Duration) {
	e.clk.Advance(d)
	e.pool.Worker(0).Tick()
	synctest.Wait()
	e.check()
}

func TestPurgeHalvesSurplusLeastRecentFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways, PurgeDelay: time.Second})
		cs := idleConns(e, 6)
		alive := func() (n int) {
			for _, c := range cs {
				if e.tree(0, c) != "-" {
					n++
				}
			}
			return n
		}
		// The peak use of the first period (6) is needed for two periods,
		// then the need decays by half each period and the surplus is
		// halved: 6, 6, 4, 2, 1, 0.
		for i, want := range []int{6, 6, 4, 2, 1, 0} {
			e.tick(time.Second)
			if got := alive(); got != want {
				t.Fatalf("purge %d: %d conns left, want %d", i+1, got, want)
			}
			// Survivors are the most recently used.
			for j, c := range cs {
				if kept := e.tree(0, c) != "-"; kept != (j >= len(cs)-want) {
					t.Fatalf("purge %d: conn %d kept=%v", i+1, j, kept)
				}
			}
		}
		for _, c := range cs {
			waitDone(t, c)
		}
		if st := e.pool.Stats(); st.Evictions != 6 || st.Conns != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestPurgeKeepsPoolLowConn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways, PurgeDelay: time.Second, PoolLowConn: 2})
		idleConns(e, 5)
		for range 10 {
			e.tick(time.Second)
		}
		if st := e.pool.Stats(); st.Conns != 2 || st.Safe != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestMaxIdleAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways, PurgeDelay: -1, MaxIdleAge: 10 * time.Second})
		e.opts = muxtest.Options{MaxStreams: 1, AutoCredit: true}
		a := e.attach(0, params("s1"), nil)
		b := e.attach(0, params("s1"), nil)
		a.Done(nil)
		e.tick(5 * time.Second)
		b.Done(nil)
		e.tick(4 * time.Second)
		if e.tree(0, a.Conn()) != "safe" || e.tree(0, b.Conn()) != "safe" {
			t.Fatal("evicted too early")
		}
		e.tick(time.Second)
		if e.tree(0, a.Conn()) != "-" || e.tree(0, b.Conn()) != "safe" {
			t.Fatal("10s: want the older connection evicted only")
		}
		waitDone(t, a.Conn())
		e.tick(5 * time.Second)
		waitDone(t, b.Conn())
	})
}

func TestLivenessProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, reuse.Config{PurgeDelay: -1, ProbeInterval: 5 * time.Second})
		l := e.attach(0, params("s1"), nil)
		l.Done(nil)
		c := l.Conn().(*muxtest.Conn)
		e.tick(4 * time.Second)
		if c.Pings() != 0 {
			t.Fatal("pinged before the interval")
		}
		e.tick(time.Second)
		if c.Pings() != 1 {
			t.Fatalf("%d pings at 5s, want 1", c.Pings())
		}
		e.tick(4 * time.Second)
		if c.Pings() != 1 {
			t.Fatalf("%d pings at 9s, want 1", c.Pings())
		}
		c.SetPing(errors.New("no PING ack"))
		e.tick(time.Second)
		if c.Pings() != 2 {
			t.Fatalf("%d pings at 10s, want 2", c.Pings())
		}
		waitDone(t, c)
		if st := e.pool.Stats(); st.ProbeFailures != 1 || st.Released != 1 || st.Conns != 0 {
			t.Fatalf("stats %+v", st)
		}
		// A busy connection is not probed.
		l = e.attach(0, params("s1"), nil)
		e.tick(time.Minute)
		if n := l.Conn().(*muxtest.Conn).Pings(); n != 0 {
			t.Fatalf("busy connection pinged %d times", n)
		}
		l.Done(nil)
	})
}

func TestWarmUpKeepsPoolLowConn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, reuse.Config{PoolLowConn: 3, PurgeDelay: -1})
		e.attach(0, params("s1"), nil).Done(nil)
		e.tick(time.Second)
		if st := e.pool.Stats(); st.Conns != 3 || st.Dials != 3 || st.Idle != 2 || st.Safe != 1 {
			t.Fatalf("stats %+v", st)
		}
		// A dead one is replaced at the next tick; failed dials are counted.
		e.conn(1).Kill(errors.New("gone"))
		e.mu.Lock()
		e.dialErr = muxtest.ErrDialRefused
		e.mu.Unlock()
		e.tick(time.Second)
		if st := e.pool.Stats(); st.Conns != 2 || st.DialErrors != 1 {
			t.Fatalf("stats %+v", st)
		}
		// Failed warm-up dials back off: retries 100, 200, 400, 800ms after
		// the previous failure, not on every tick.
		for _, step := range []time.Duration{50, 50, 100, 100, 100, 400, 100} {
			e.tick(step * time.Millisecond)
		}
		if st := e.pool.Stats(); st.DialErrors != 4 {
			t.Fatalf("%d failed warm-up dials over 7 ticks in 900ms, want 4 (backoff)", st.DialErrors)
		}
		e.mu.Lock()
		e.dialErr = nil
		e.mu.Unlock()
		e.tick(time.Second)
		if st := e.pool.Stats(); st.Conns != 3 || st.Dials != 4 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestRunTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, reuse.Config{PurgeDelay: -1, MaxIdleAge: time.Second})
		e.attach(0, params("s1"), nil).Done(nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { e.pool.Run(ctx, 100*time.Millisecond); close(done) }()
		e.clk.Advance(2 * time.Second)
		time.Sleep(150 * time.Millisecond) // synthetic time in the bubble: one Run tick
		synctest.Wait()
		if st := e.pool.Stats(); st.Conns != 0 {
			t.Fatalf("Run did not tick: %+v", st)
		}
		cancel()
		<-done
	})
}
