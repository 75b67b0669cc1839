package bufring

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
)

func boundedPool(t *testing.T, limit int64) *BytePool {
	t.Helper()
	p, err := NewBytePool(ByteConfig{Sizes: []int{1 << 10, 4 << 10}, Shared: 64, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAcquireLimitConfig(t *testing.T) {
	if _, err := NewBytePool(ByteConfig{Sizes: []int{4096}, Limit: 100}); !errors.Is(err, ErrConfig) {
		t.Errorf("Limit below the largest class: %v", err)
	}
	if _, err := NewBytePool(ByteConfig{Limit: -1}); !errors.Is(err, ErrConfig) {
		t.Errorf("negative Limit: %v", err)
	}
	p := boundedPool(t, 8<<10)
	if err := p.Resize([]int{512}); !errors.Is(err, ErrConfig) {
		t.Errorf("Resize of a bounded pool: %v", err)
	}
	if _, err := p.Acquire(context.Background(), 5<<10); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Acquire above the largest class: %v", err)
	}
}

// TestAcquireWaitsForRelease fills a bounded pool, then checks that the next
// Acquire sleeps until a Release hands it the buffer, that an Acquire whose
// deadline passes fails without taking anything, and that evicting a free
// buffer of another class makes room.
func TestAcquireWaitsForRelease(t *testing.T) {
	p := boundedPool(t, 8<<10)
	ctx := context.Background()
	a, _ := p.Acquire(ctx, 4<<10)
	b, err := p.Acquire(ctx, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(short, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire beyond the Limit: %v, want a deadline error", err)
	}
	got := make(chan []byte)
	go func() {
		c, err := p.Acquire(ctx, 4000)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	testutil.WaitFor(t, "a sleeping Acquire", func() bool { return p.Stats().Waiting == 1 })
	p.Release(a)
	c := <-got
	if len(c) != 4000 || &c[:1][0] != &a[:1][0] {
		t.Errorf("the sleeper got len %d, not the released buffer", len(c))
	}
	p.Release(b)
	p.Release(c)
	// Two free 4 KiB buffers fill the Limit: a 1 KiB Acquire evicts one.
	d, err := p.Acquire(ctx, 1000)
	if err != nil || cap(d) != 1<<10 {
		t.Fatalf("Acquire after eviction: cap %d, %v", cap(d), err)
	}
	p.Release(d)
	s := p.Stats()
	if s.InUse != 0 || s.Waits != 2 || s.WaitFailures != 1 || s.Handoffs != 1 || s.Evicted != 1 || s.Live > s.Limit {
		t.Errorf("stats %+v", s)
	}
}

// TestAcquireConservation hammers a small bounded pool from many goroutines,
// some with deadlines short enough to give up (the cancel/hand-off race):
// afterwards every buffer is back (InUse 0), nothing sleeps, and the pool
// never held more than its Limit.
func TestAcquireConservation(t *testing.T) {
	p := boundedPool(t, 8<<10)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(g%4)*50*time.Microsecond+time.Millisecond)
				b, err := p.Acquire(ctx, 1<<10+(i%2)*3<<10)
				cancel()
				if err != nil {
					continue
				}
				if live := p.Stats().Live; live > 8<<10 {
					t.Errorf("live %d above the Limit", live)
				}
				b[0] = byte(i)
				runtime.Gosched() // hold it a moment: others must sleep
				p.Release(b)
			}
		}()
	}
	wg.Wait()
	s := p.Stats()
	if s.InUse != 0 || s.Waiting != 0 || s.Live > s.Limit || s.SharedGets != s.SharedPuts {
		t.Errorf("after the load: %+v", s)
	}
	if s.Waits == 0 {
		t.Errorf("no Acquire slept: the test did not exhaust the pool (%+v)", s)
	}
}

func TestAcquireClose(t *testing.T) {
	p := boundedPool(t, 4<<10)
	b, _ := p.Acquire(context.Background(), 4<<10)
	done := make(chan error)
	go func() {
		_, err := p.Acquire(context.Background(), 1)
		done <- err
	}()
	testutil.WaitFor(t, "a sleeping Acquire", func() bool { return p.Stats().Waiting == 1 })
	p.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("sleeper after Close: %v", err)
	}
	p.Release(b)
}

// TestReleaseTwice: in debug builds a second Release of a buffer panics
// (debug_test.go runs the package's tests with the tracker on).
func TestReleaseTwice(t *testing.T) {
	if !debug {
		t.Skip("needs -tags bufring_debug")
	}
	p := boundedPool(t, 8<<10)
	b, err := p.Acquire(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	p.Release(b)
	defer func() {
		if recover() == nil {
			t.Error("a double Release did not panic")
		}
	}()
	p.Release(b)
}

// TestTryAcquire checks that TryAcquire takes a buffer when one is at hand
// and refuses, counting no wait and no failure, when the Limit is spent;
// a sleeping Acquire still gets the room of the next Release.
func TestTryAcquire(t *testing.T) {
	p := boundedPool(t, 8<<10)
	if _, ok := p.TryAcquire(5 << 10); ok {
		t.Error("TryAcquire above the largest class succeeded")
	}
	a, ok := p.TryAcquire(4 << 10)
	b, ok2 := p.TryAcquire(4000)
	if !ok || !ok2 || len(a) != 4<<10 || len(b) != 4000 {
		t.Fatalf("TryAcquire within the Limit: %v %v", ok, ok2)
	}
	if _, ok := p.TryAcquire(100); ok {
		t.Fatal("TryAcquire beyond the Limit succeeded")
	}
	got := make(chan []byte)
	go func() {
		c, err := p.Acquire(context.Background(), 4000)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	testutil.WaitFor(t, "a sleeping Acquire", func() bool { return p.Stats().Waiting == 1 })
	p.Release(a)
	c := <-got
	p.Release(b)
	p.Release(c)
	if d, ok := p.TryAcquire(4000); !ok {
		t.Error("TryAcquire after the releases failed")
	} else {
		p.Release(d)
	}
	if s := p.Stats(); s.InUse != 0 || s.Waits != 1 || s.WaitFailures != 0 {
		t.Errorf("stats %+v", s)
	}
}
