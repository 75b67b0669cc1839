package bufring

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
)

// TestReserveSharesLimit checks that reservations and buffers share the
// Limit: a reservation evicts free buffers to fit, one that does not fit
// fails at once (TryReserve) or at its deadline (Reserve) without
// counting, and Unreserve gives the room back.
func TestReserveSharesLimit(t *testing.T) {
	p := boundedPool(t, 8<<10)
	ctx := context.Background()
	b, err := p.Acquire(ctx, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	p.Release(b) // pooled: live, but free
	if err := p.Reserve(ctx, 6<<10); err != nil {
		t.Fatalf("Reserve with a free buffer to evict: %v", err)
	}
	if s := p.Stats(); s.Live != 6<<10 || s.Reserved != 6<<10 || s.Evicted != 1 || s.Reserves != 1 {
		t.Fatalf("after Reserve: live %d reserved %d evicted %d reserves %d", s.Live, s.Reserved, s.Evicted, s.Reserves)
	}
	if p.TryReserve(4 << 10) {
		t.Fatal("TryReserve beyond the Limit succeeded")
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := p.Reserve(short, 4<<10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Reserve beyond the Limit: %v, want a deadline error", err)
	}
	if _, err := p.Acquire(short, 4<<10); err == nil {
		t.Fatal("Acquire beyond the Limit succeeded")
	}
	p.Unreserve(6 << 10)
	if !p.TryReserve(8 << 10) {
		t.Fatal("TryReserve of the whole Limit after Unreserve failed")
	}
	p.Unreserve(8 << 10)
	if s := p.Stats(); s.Live != 0 || s.Reserved != 0 || s.ReserveWaiting != 0 || s.ReserveWaits != 1 || s.ReserveFailures != 1 {
		t.Errorf("at the end: %+v", s)
	}
	if err := p.Reserve(ctx, -1); !errors.Is(err, ErrConfig) {
		t.Errorf("negative reservation: %v", err)
	}
}

// TestReserveLimit checks that reservations stop at ReserveLimit, leaving
// the rest of the Limit to buffers, and wait there for an Unreserve.
func TestReserveLimit(t *testing.T) {
	if _, err := NewBytePool(ByteConfig{Sizes: []int{1 << 10}, Limit: 4 << 10, ReserveLimit: 8 << 10}); !errors.Is(err, ErrConfig) {
		t.Errorf("ReserveLimit above Limit: %v", err)
	}
	p, err := NewBytePool(ByteConfig{Sizes: []int{4 << 10}, Limit: 16 << 10, ReserveLimit: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if !p.TryReserve(8<<10) || p.TryReserve(1) {
		t.Fatal("reservations not bounded by ReserveLimit")
	}
	var bufs [][]byte
	for range 2 {
		b, err := p.Acquire(ctx, 4<<10)
		if err != nil {
			t.Fatalf("Acquire within the room reservations must leave: %v", err)
		}
		bufs = append(bufs, b)
	}
	reserved := make(chan error, 1)
	go func() { reserved <- p.Reserve(ctx, 4<<10) }()
	testutil.WaitFor(t, "the Reserve asleep", func() bool { return p.Stats().ReserveWaiting == 1 })
	for _, b := range bufs {
		p.Release(b) // room under Limit, not under ReserveLimit
	}
	select {
	case err := <-reserved:
		t.Fatalf("Reserve beyond ReserveLimit woken by a buffer release: %v", err)
	default:
	}
	p.Unreserve(8 << 10)
	if err := <-reserved; err != nil {
		t.Fatal(err)
	}
	p.Unreserve(4 << 10)
	if s := p.Stats(); s.Reserved != 0 || s.ReserveWaiting != 0 {
		t.Errorf("at the end: %+v", s)
	}
}

// TestReserveBeforeAcquire checks the order of service: a release goes to
// a sleeping Reserve before a sleeping Acquire (which gets the next one),
// and Close wakes a sleeping Reserve with ErrClosed.
func TestReserveBeforeAcquire(t *testing.T) {
	p := boundedPool(t, 8<<10)
	ctx := context.Background()
	a, _ := p.Acquire(ctx, 4<<10)
	b, _ := p.Acquire(ctx, 4<<10)
	acquired := make(chan []byte, 1)
	go func() {
		c, err := p.Acquire(ctx, 4<<10)
		if err != nil {
			t.Error(err)
		}
		acquired <- c
	}()
	testutil.WaitFor(t, "the Acquire asleep", func() bool { return p.Stats().Waiting == 1 })
	reserved := make(chan error, 1)
	go func() { reserved <- p.Reserve(ctx, 4<<10) }()
	testutil.WaitFor(t, "the Reserve asleep", func() bool { return p.Stats().ReserveWaiting == 1 })
	if p.TryReserve(1) {
		t.Fatal("TryReserve overtook a sleeping Reserve")
	}
	p.Release(a)
	if err := <-reserved; err != nil {
		t.Fatalf("Reserve after a release: %v", err)
	}
	select {
	case <-acquired:
		t.Fatal("the Acquire was served with the room the Reserve took")
	default:
	}
	p.Release(b)
	c := <-acquired
	if s := p.Stats(); s.Reserved != 4<<10 || s.Live != 8<<10 || s.Evicted != 1 {
		t.Errorf("live %d reserved %d evicted %d, want 8 KiB, 4 KiB, 1", s.Live, s.Reserved, s.Evicted)
	}
	go func() { reserved <- p.Reserve(ctx, 4<<10) }()
	testutil.WaitFor(t, "a second Reserve asleep", func() bool { return p.Stats().ReserveWaiting == 1 })
	p.Close()
	if err := <-reserved; !errors.Is(err, ErrClosed) {
		t.Errorf("Reserve woken by Close: %v", err)
	}
	p.Release(c)
	p.Unreserve(4 << 10)
	if s := p.Stats(); s.Reserved != 0 || s.ReserveWaiting != 0 {
		t.Errorf("after Close: %+v", s)
	}
}

// TestReserveStress mixes Acquire, Release, Reserve (with short deadlines),
// TryReserve and Unreserve from many goroutines on a small Limit, then
// checks conservation: the Limit never exceeded, nothing reserved, held
// or asleep at the end, every reservation granted given back.
func TestReserveStress(t *testing.T) {
	const limit = 12 << 10
	p := boundedPool(t, limit)
	var wg sync.WaitGroup
	var over sync.Once
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 2000 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.IntN(200))*time.Microsecond)
				switch r.IntN(3) {
				case 0:
					if b, err := p.Acquire(ctx, 1+r.IntN(4<<10)); err == nil {
						runtime.Gosched()
						p.Release(b)
					}
				case 1:
					n := int64(1 + r.IntN(8<<10))
					if p.Reserve(ctx, n) == nil {
						if p.Stats().Live > limit {
							over.Do(func() { t.Error("live above the Limit") })
						}
						runtime.Gosched()
						p.Unreserve(n)
					}
				default:
					if n := int64(r.IntN(16 << 10)); p.TryReserve(n) {
						p.Unreserve(n)
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
	s := p.Stats()
	if s.Reserved != 0 || s.ReserveWaiting != 0 || s.Waiting != 0 || s.InUse != 0 || s.Live > limit {
		t.Errorf("after the stress: %+v", s)
	}
	if s.Reserves == 0 || s.ReserveWaits == 0 {
		t.Errorf("the stress never reserved, or never waited: %+v", s)
	}
	t.Logf("reserves %d, waits %d, failures %d; acquire waits %d", s.Reserves, s.ReserveWaits, s.ReserveFailures, s.Waits)
}
