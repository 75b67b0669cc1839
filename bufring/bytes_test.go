package bufring

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestByteConfigInvalid(t *testing.T) {
	for _, cfg := range []ByteConfig{
		{Sizes: []int{}},
		{Sizes: []int{0}},
		{Sizes: []int{100, 100}},
		{Sizes: []int{200, 100}},
		{CacheSize: 2, Batch: 4},
		{Shared: -1},
	} {
		if _, err := NewBytePool(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("NewBytePool(%+v): err = %v, want ErrConfig", cfg, err)
		}
	}
	p, _ := NewBytePool(ByteConfig{})
	if err := p.Resize(nil); !errors.Is(err, ErrConfig) {
		t.Errorf("Resize(nil) = %v", err)
	}
}

func TestBytePoolClasses(t *testing.T) {
	p, err := NewBytePool(ByteConfig{Sizes: []int{64, 256}, CacheSize: 2, Batch: 1, Shared: 2})
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.NewCache("a"), p.NewCache("b")
	for _, tc := range []struct{ n, cap int }{{0, 64}, {1, 64}, {64, 64}, {65, 256}, {256, 256}, {257, 257}} {
		buf := a.Get(tc.n)
		if len(buf) != tc.n || cap(buf) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want cap %d", tc.n, len(buf), cap(buf), tc.cap)
		}
		b.Put(buf) // released on another worker
	}
	s := p.Stats()
	if s.Gets != 6 || s.Puts != 6 || s.InUse != 0 || s.Allocs != 5 || s.Oversize != 1 || s.Dropped != 1 {
		t.Fatalf("stats: %+v", s)
	}
	// b caches 2 buffers of 64 and 2 of 256 (cap 2) after one flush of 1.
	x := b.Get(10)
	x[0] = 42
	b.Put(x)
	y := b.Get(20)
	if &y[:1][0] != &x[0] {
		t.Fatal("Get after Put did not reuse the cached buffer")
	}
	b.Put(make([]byte, 64)[1:]) // resliced: capacity 63 fits no class
	b.Flush()
	if s := p.Stats(); s.Shared[0] != 2 || s.Dropped != 2 {
		t.Fatalf("after Flush: shared %v dropped %d", s.Shared, s.Dropped)
	}
	b.Put(y)
	b.Flush() // the ring of 2 is full: y goes to the GC
	a.Close()
	b.Close()
	if s := p.Stats(); len(s.Owners) != 0 || s.Gets != 8 || s.Discarded == 0 {
		t.Fatalf("after Close: %+v", s)
	}
}

func TestBytePoolResize(t *testing.T) {
	p, _ := NewBytePool(ByteConfig{Sizes: []int{100, 1000}, CacheSize: 4, Shared: 8})
	c := p.NewCache("c")
	var bufs [][]byte
	for range 3 {
		bufs = append(bufs, c.Get(50), c.Get(500))
	}
	for _, b := range bufs {
		c.Put(b)
	}
	held := c.Get(50)
	if err := p.Resize([]int{100, 2000}); err != nil {
		t.Fatal(err)
	}
	c.Housekeep()
	s := p.Stats()
	if s.Generation != 2 || s.Stale != 3 || s.Sizes[1] != 2000 {
		t.Fatalf("after resize: %+v (want the three 1000-byte buffers dropped)", s)
	}
	if b := c.Get(500); cap(b) != 2000 {
		t.Fatalf("Get(500) after resize: cap %d", cap(b))
	}
	c.Put(held) // 100 is still a class: kept
	if s := p.Stats(); s.Dropped != 0 {
		t.Fatalf("a buffer of a surviving class was dropped: %+v", s)
	}
}

// TestBytePoolResizeUnderLoad resizes repeatedly while workers get and put
// buffers (and hand them to each other); every buffer a worker gets must have
// a capacity that was a class of the generation it saw, and after the last
// resize no cache may hand out a buffer of an old size.
func TestBytePoolResizeUnderLoad(t *testing.T) {
	const workers = 4
	iters := 4000
	if testing.Short() {
		iters = 1000
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	p, _ := NewBytePool(ByteConfig{Sizes: []int{128, 1024}, CacheSize: 8, Shared: 32})
	valid := map[int]bool{128: true, 1024: true, 256: true, 2048: true, 512: true, 4096: true}
	handoff := make(chan []byte, 64)
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.NewCache("w")
			defer c.Close()
			for i := 0; i < iters || !stop.Load() && i < 100*iters; i++ {
				n := (i*37 + w*101) % 1500
				b := c.Get(n)
				if len(b) != n || cap(b) != n && !valid[cap(b)] {
					errs <- errors.New("Get returned a buffer of a size that never was a class")
					return
				}
				if n > 0 {
					b[0] = byte(w) // a buffer with two owners shows up as a race
				}
				select {
				case handoff <- b:
				default:
					c.Put(b)
				}
				select {
				case o := <-handoff:
					c.Put(o)
				default:
				}
			}
		}()
	}
	for _, sizes := range [][]int{{256, 2048}, {128, 512, 4096}, {512, 4096}} {
		for range 200 {
			runtime.Gosched()
		}
		if err := p.Resize(sizes); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c := p.NewCache("check")
	for n := 1; n <= 4096; n += 97 {
		if b := c.Get(n); cap(b) != 512 && cap(b) != 4096 {
			t.Fatalf("after the last resize Get(%d) has cap %d", n, cap(b))
		}
	}
	s := p.Stats()
	if s.Generation != 4 {
		t.Fatalf("generation %d, want 4", s.Generation)
	}
	t.Logf("gets %d allocs %d stale %d dropped %d discarded %d", s.Gets, s.Allocs, s.Stale, s.Dropped, s.Discarded)
}
