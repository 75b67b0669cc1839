package bufring

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

type waitResult struct {
	name string
	addr uint64
	err  error
}

// startWaiter runs Wait on a new cache in its own goroutine and returns the
// channel its result arrives on. It returns once the waiter is queued.
func startWaiter(ctx context.Context, p *FramePool, name string, class Class) <-chan waitResult {
	res := make(chan waitResult, 1)
	c := p.NewCache(name)
	go func() {
		a, err := c.Wait(ctx, class)
		res <- waitResult{name, a, err}
	}()
	synctest.Wait()
	return res
}

// drain takes every frame of p, reserve included.
func drain(t *testing.T, p *FramePool, c *Cache) []uint64 {
	t.Helper()
	all := make([]uint64, p.Config().Frames)
	if n := c.GetRX(all); n != len(all) {
		t.Fatalf("drained %d of %d frames", n, len(all))
	}
	return all
}

func TestWaitPriorityFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, FrameConfig{Frames: 4, FrameSize: 2048, CacheSize: 1})
		holder := p.NewCache("holder")
		all := drain(t, p, holder)
		ctx := context.Background()
		var rs []<-chan waitResult
		for _, w := range []struct {
			name  string
			class Class
		}{{"app1", ClassApp}, {"tx1", ClassTX}, {"app2", ClassApp}, {"rx1", ClassRX}, {"tx2", ClassTX}} {
			rs = append(rs, startWaiter(ctx, p, w.name, w.class))
		}
		if s := p.Stats(); s.Waiting != 5 || s.Waits != 5 {
			t.Fatalf("Waiting %d Waits %d, want 5 5", s.Waiting, s.Waits)
		}
		var order []string
		for i, a := range all {
			holder.Put(a)
			synctest.Wait()
			for _, r := range rs {
				select {
				case got := <-r:
					if got.err != nil || got.addr != a {
						t.Fatalf("release %d: %s got %#x, %v; want %#x", i, got.name, got.addr, got.err, a)
					}
					order = append(order, got.name)
				default:
				}
			}
			if len(order) != i+1 {
				t.Fatalf("release %d woke %v", i, order)
			}
		}
		want := []string{"rx1", "tx1", "tx2", "app1"}
		for i := range want {
			if order[i] != want[i] {
				t.Fatalf("served %v, want %v", order, want)
			}
		}
		s := p.Stats()
		if s.Handoffs != 4 || s.Waiting != 1 || s.Cached != 0 || s.WaitTime[0] != 4 {
			t.Fatalf("stats: %+v", s)
		}
		p.Close()
		synctest.Wait()
		if got := <-rs[2]; !errors.Is(got.err, ErrClosed) || !errors.Is(got.err, net.ErrClosed) {
			t.Fatalf("app2 after Close: %v, want ErrClosed wrapping net.ErrClosed", got.err)
		}
		if _, err := holder.Wait(ctx, ClassTX); !errors.Is(err, ErrClosed) {
			t.Fatalf("Wait on closed pool: %v", err)
		}
	})
}

// TestWaitReserve checks that only RX waiters take the reserve and that the
// reserve is refilled before less critical waiters are served.
func TestWaitReserve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, FrameConfig{Frames: 4, FrameSize: 2048, Reserve: 1, CacheSize: 1})
		holder := p.NewCache("holder")
		all := make([]uint64, 3)
		holder.GetBatch(all)
		tx := startWaiter(t.Context(), p, "tx", ClassTX)
		if s := p.Stats(); s.Reserve != 1 || s.Waiting != 1 {
			t.Fatalf("TX waiter took the reserve: %+v", s)
		}
		rx := startWaiter(t.Context(), p, "rx", ClassRX)
		if got := <-rx; got.err != nil {
			t.Fatalf("RX waiter did not get the reserve frame: %v", got.err)
		}
		holder.Put(all[0]) // refills the reserve; tx keeps waiting
		synctest.Wait()
		if s := p.Stats(); s.Reserve != 1 || s.Waiting != 1 {
			t.Fatalf("release did not refill the reserve first: %+v", s)
		}
		holder.Put(all[1])
		if got := <-tx; got.err != nil || got.addr != all[1] {
			t.Fatalf("tx got %#x, %v; want %#x", got.addr, got.err, all[1])
		}
	})
}

func TestWaitTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, FrameConfig{Frames: 2, FrameSize: 2048, CacheSize: 1})
		c := p.NewCache("c")
		held := drain(t, p, c)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		if _, err := c.Wait(ctx, ClassApp); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("Wait gave up after %v, want 1s", d)
		}
		if s := p.Stats(); s.Waiting != 0 || s.WaitFailures != 1 || s.Handoffs != 0 {
			t.Fatalf("stats after timeout: %+v", s)
		}
		if _, err := c.Wait(ctx, ClassApp); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait with expired context = %v", err)
		}
		if _, err := c.Wait(ctx, Class(7)); !errors.Is(err, ErrConfig) {
			t.Fatalf("Wait with bad class = %v", err)
		}
		c.PutBatch(held)
		checkConservation(t, p)
	})
}

// TestWaitCancelAfterHandoff forces the race in which a frame is handed to a
// waiter whose context has just ended: the waiter must pass the frame on to
// the next waiter, and nothing is lost or owned twice.
func TestWaitCancelAfterHandoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, FrameConfig{Frames: 2, FrameSize: 2048, CacheSize: 1})
		holder := p.NewCache("holder")
		held := drain(t, p, holder)
		ctx, cancel := context.WithCancel(t.Context())
		first := startWaiter(ctx, p, "first", ClassTX)
		second := startWaiter(t.Context(), p, "second", ClassApp)

		p.waitCancelledHook = func() { holder.Put(held[0]) }
		cancel()
		if got := <-first; !errors.Is(got.err, context.Canceled) {
			t.Fatalf("first = %#x, %v; want Canceled", got.addr, got.err)
		}
		p.waitCancelledHook = nil
		got := <-second
		if got.err != nil || got.addr != held[0] {
			t.Fatalf("second = %#x, %v; want the passed-on frame %#x", got.addr, got.err, held[0])
		}
		s := p.Stats()
		if s.PassedOn != 1 || s.Handoffs != 2 || s.Waiting != 0 {
			t.Fatalf("stats: %+v", s)
		}
		holder.Put(held[1])
		holder.Put(got.addr)
		checkConservation(t, p)
	})
}

// TestWaitCancelRace lets cancellation and release race freely, many times:
// whichever side wins, the frame ends up with exactly one owner.
func TestWaitCancelRace(t *testing.T) {
	for range 200 {
		synctest.Test(t, func(t *testing.T) {
			p := newPool(t, FrameConfig{Frames: 1, FrameSize: 2048, CacheSize: 1})
			holder := p.NewCache("holder")
			a, _ := holder.Get()
			ctx, cancel := context.WithCancel(t.Context())
			first := startWaiter(ctx, p, "first", ClassApp)
			second := startWaiter(t.Context(), p, "second", ClassApp)
			cancel()
			holder.Put(a)
			if r1 := <-first; r1.err == nil {
				holder.Put(r1.addr)
			}
			r2 := <-second // gets either the passed-on frame or the one first released
			if r2.err != nil {
				t.Fatalf("second: %v", r2.err)
			}
			holder.Put(r2.addr)
			if s := p.Stats(); s.Waiting != 0 || s.InUse != 0 {
				t.Fatalf("stats: %+v", s)
			}
			checkConservation(t, p)
		})
	}
}

// TestWaitFedFromBusyCache checks that a worker releasing frames while
// others wait hands over its cached stock, not only the frame it releases.
func TestWaitFedFromBusyCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, FrameConfig{Frames: 4, FrameSize: 2048, CacheSize: 4})
		busy := p.NewCache("busy")
		all := drain(t, p, busy)
		busy.PutBatch(all[:3]) // cached locally: nobody waits yet
		w1 := startWaiter(t.Context(), p, "w1", ClassApp)
		w2 := startWaiter(t.Context(), p, "w2", ClassApp)
		busy.Put(all[3])
		for _, w := range []<-chan waitResult{w1, w2} {
			if got := <-w; got.err != nil {
				t.Fatalf("%s: %v", got.name, got.err)
			}
		}
		if s := p.Stats(); s.Waiting != 0 || s.Shared != 2 || s.Cached != 0 {
			t.Fatalf("stats: %+v", s)
		}
	})
}

// TestWaitTimeoutRace runs waiters whose deadlines expire at the same fake
// instants as releases happen, many rounds over, so that timeouts, hand-offs
// and pass-ons collide; afterwards nobody waits and every frame is accounted
// for.
func TestWaitTimeoutRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, FrameConfig{Frames: 4, FrameSize: 2048, CacheSize: 1})
		holder := p.NewCache("holder")
		held := drain(t, p, holder)
		const waiters, rounds = 6, 100
		results := make(chan int, waiters)
		for w := range waiters {
			c := p.NewCache("waiter")
			go func() {
				got := 0
				for r := range rounds {
					// Deadlines of 1..3 ticks against releases every tick.
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+(r+w)%3)*time.Millisecond)
					a, err := c.Wait(ctx, Class((r+w)%int(numClasses)))
					cancel()
					if err == nil {
						got++
						time.Sleep(time.Millisecond)
						c.Put(a)
						c.Flush()
					}
				}
				results <- got
			}()
		}
		for _, a := range held { // release one frame per tick
			time.Sleep(time.Millisecond)
			holder.Put(a)
		}
		total := 0
		for range waiters {
			total += <-results
		}
		s := p.Stats()
		if s.Waiting != 0 || s.InUse != 0 || total == 0 {
			t.Fatalf("after %d successful waits: %+v", total, s)
		}
		checkConservation(t, p)
		t.Logf("waits %d, failed %d, handoffs %d, passed on %d", s.Waits, s.WaitFailures, s.Handoffs, s.PassedOn)
	})
}
