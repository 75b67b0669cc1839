package bufring

import (
	"errors"
	"testing"

	"github.com/xdpnet/xdpnet/bufring/bufringtest"
)

func newPool(t testing.TB, cfg FrameConfig) *FramePool {
	t.Helper()
	p, err := NewFramePool(cfg)
	if err != nil {
		t.Fatalf("NewFramePool(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		p.Close()
	})
	return p
}

func checkConservation(t testing.TB, p *FramePool) {
	t.Helper()
	if err := p.CheckConservation(); err != nil {
		t.Fatal(err)
	}
}

func TestFrameConfigInvalid(t *testing.T) {
	for _, cfg := range []FrameConfig{
		{},
		{Frames: 8},
		{Frames: -1, FrameSize: 2048},
		{Frames: 8, FrameSize: 2048, Reserve: 8},
		{Frames: 8, FrameSize: 2048, Reserve: -1},
		{Frames: 8, FrameSize: 2048, CacheSize: 2, Batch: 3},
		{Frames: 8, FrameSize: 2048, CacheSize: -2},
		{Frames: 8, FrameSize: 2048, Region: make([]byte, 7*2048)},
	} {
		if _, err := NewFramePool(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("NewFramePool(%+v): err = %v, want ErrConfig", cfg, err)
		}
	}
}

func TestFramePoolAddresses(t *testing.T) {
	region := bufringtest.Region(t, 10, 2048)
	p := newPool(t, FrameConfig{Frames: 10, FrameSize: 2048, Reserve: 2, CacheSize: 4, Region: region})
	if got := p.Config(); got.CacheSize != 4 || got.Batch != 2 {
		t.Fatalf("defaults: CacheSize %d Batch %d, want 4 2", got.CacheSize, got.Batch)
	}
	c := p.NewCache("w0")
	dst := make([]uint64, 12)
	n := c.GetBatch(dst)
	if n != 8 {
		t.Fatalf("GetBatch drained %d frames, want 8 (10 minus reserve of 2)", n)
	}
	seen := map[uint64]bool{}
	for _, a := range dst[:n] {
		if !p.Contains(a) || seen[a] || a < 2*2048 {
			t.Fatalf("bad or duplicate address %#x among %v", a, dst[:n])
		}
		seen[a] = true
		if f := p.Frame(a); len(f) != 2048 || cap(f) != 2048 || &f[0] != &region[a] {
			t.Fatalf("Frame(%#x) does not alias the region", a)
		}
	}
	if _, ok := c.Get(); ok {
		t.Fatal("Get took a reserve frame")
	}
	if n := c.GetRX(dst[:3]); n != 2 || dst[0] != 0 && dst[0] != 2048 {
		t.Fatalf("GetRX = %d %v, want the 2 reserve frames", n, dst[:2])
	}
	s := p.Stats()
	if s.InUse != 10 || s.Free != 0 || s.Reserve != 0 || s.ReserveTaken != 2 || s.HighWater != 10 || s.Failures != 3 {
		t.Fatalf("stats after draining: %+v", s)
	}
	if p.Contains(1) || p.Contains(10*2048) {
		t.Fatal("Contains accepts foreign addresses")
	}
	checkConservation(t, p)
}

// TestReserveRefilledFirst checks that releases refill the RX reserve before
// anything else, and that only GetRX can take it.
func TestReserveRefilledFirst(t *testing.T) {
	p := newPool(t, FrameConfig{Frames: 8, FrameSize: 4096, Reserve: 3, CacheSize: 2})
	rx, app := p.NewCache("rx"), p.NewCache("app")
	all := make([]uint64, 8)
	if n := rx.GetRX(all); n != 8 {
		t.Fatalf("GetRX = %d, want all 8 frames", n)
	}
	// Two releases go to the reserve, not to app's cache.
	app.PutBatch(all[:2])
	if s := p.Stats(); s.Reserve != 2 || s.Cached != 0 {
		t.Fatalf("after 2 releases: reserve %d cached %d, want 2 0", s.Reserve, s.Cached)
	}
	if _, ok := app.Get(); ok {
		t.Fatal("Get took a reserve frame")
	}
	app.Put(all[2]) // completes the reserve
	app.Put(all[3]) // now cached locally
	if s := p.Stats(); s.Reserve != 3 || s.Cached != 1 {
		t.Fatalf("reserve %d cached %d, want 3 1", s.Reserve, s.Cached)
	}
	if a, ok := app.Get(); !ok || a != all[3] {
		t.Fatalf("Get = %#x %v, want the cached frame %#x", a, ok, all[3])
	}
	app.Put(all[3])
	app.PutBatch(all[4:])
	checkConservation(t, p)
	for _, c := range []*Cache{rx, app} {
		c.Close()
	}
	s := p.Stats()
	if s.Shared != 5 || s.Reserve != 3 || s.InUse != 0 || len(s.Owners) != 0 {
		t.Fatalf("after close: %+v", s)
	}
	checkConservation(t, p)
}

// TestCacheBatching checks that a cache touches the shared ring only in
// batches and that frames released on another worker return to the pool.
func TestCacheBatching(t *testing.T) {
	p := newPool(t, FrameConfig{Frames: 64, FrameSize: 2048, CacheSize: 8, Batch: 4})
	a, b := p.NewCache("a"), p.NewCache("b")
	var got []uint64
	for range 5 {
		f, ok := a.Get()
		if !ok {
			t.Fatal("Get failed on a full pool")
		}
		got = append(got, f)
	}
	if s := p.Stats(); s.Shared != 56 || s.Cached != 3 {
		t.Fatalf("after 5 gets: shared %d cached %d, want 56 (two batches of 4 taken) and 3", s.Shared, s.Cached)
	}
	for _, f := range got { // cross-worker release
		b.Put(f)
	}
	s := p.Stats()
	if s.Owners[0].InUse != 5 || s.Owners[1].InUse != -5 || s.Owners[1].Cached != 5 || s.InUse != 0 {
		t.Fatalf("owners after transfer: %+v", s.Owners)
	}
	got = got[:0]
	for range 8 {
		f, _ := a.Get()
		got = append(got, f)
	}
	b.PutBatch(got) // 5 cached + 8 > 8: 3 fit, 5 go to the ring
	if s := p.Stats(); s.Owners[1].Cached != 8 || s.Shared != 64-8-3 {
		t.Fatalf("after PutBatch overflow: shared %d, b cached %d", s.Shared, s.Owners[1].Cached)
	}
	f, _ := a.Get()
	b.Put(f) // b is full: flushes a batch of 4 first
	if s := p.Stats(); s.Owners[1].Cached != 5 {
		t.Fatalf("after flush on full cache: b cached %d, want 5", s.Owners[1].Cached)
	}
	checkConservation(t, p)
	b.Flush()
	a.Flush()
	if s := p.Stats(); s.Shared != 64 || s.Cached != 0 {
		t.Fatalf("after Flush: %+v", s)
	}
	checkConservation(t, p)
}

func TestConservationDetectsLoss(t *testing.T) {
	p := newPool(t, FrameConfig{Frames: 16, FrameSize: 2048})
	p.main.Pop() // a frame vanishes without a Get
	if err := p.CheckConservation(); !errors.Is(err, ErrConservation) {
		t.Fatalf("CheckConservation after losing a frame = %v", err)
	}
}

func TestConservationDetectsDuplicate(t *testing.T) {
	p := newPool(t, FrameConfig{Frames: 16, FrameSize: 2048})
	a, _ := p.main.Pop()
	p.main.Pop()
	p.main.Push(a)
	p.main.Push(a) // a is in the ring twice, the second frame is gone
	if err := p.CheckConservation(); !errors.Is(err, ErrConservation) {
		t.Fatalf("CheckConservation with a duplicate = %v", err)
	}
}
