package bufring

import (
	"errors"
	"sync"
	"testing"
)

func TestNewRingCapacity(t *testing.T) {
	for _, c := range []int{0, -1, 3, 6, 1000} {
		if _, err := NewRing(c); !errors.Is(err, ErrNotPowerOfTwo) {
			t.Errorf("NewRing(%d): err = %v, want ErrNotPowerOfTwo", c, err)
		}
	}
	for _, c := range []int{1, 2, 1024} {
		r, err := NewRing(c)
		if err != nil || r.Cap() != c || r.Len() != 0 {
			t.Errorf("NewRing(%d) = cap %d len %d, %v", c, r.Cap(), r.Len(), err)
		}
	}
}

func TestRingFIFOWrap(t *testing.T) {
	r, _ := NewRing(4)
	next, want := uint64(0), uint64(0)
	for lap := range 10 {
		for r.Push(next) {
			next++
		}
		if r.Len() != 4 {
			t.Fatalf("lap %d: full ring Len = %d", lap, r.Len())
		}
		for range lap%4 + 1 {
			v, ok := r.Pop()
			if !ok || v != want {
				t.Fatalf("lap %d: Pop = %d, %v; want %d", lap, v, ok, want)
			}
			want++
		}
	}
	for {
		v, ok := r.Pop()
		if !ok {
			break
		}
		if v != want {
			t.Fatalf("Pop = %d, want %d", v, want)
		}
		want++
	}
	if want != next || r.Len() != 0 {
		t.Fatalf("drained %d of %d pushed, Len %d", want, next, r.Len())
	}
}

func TestRingBatch(t *testing.T) {
	r, _ := NewRing(8)
	if n := r.PushBatch([]uint64{1, 2, 3, 4, 5}); n != 5 {
		t.Fatalf("PushBatch 5 into empty ring of 8 = %d", n)
	}
	if n := r.PushBatch([]uint64{6, 7, 8, 9, 10}); n != 3 {
		t.Fatalf("PushBatch 5 into ring with 3 free = %d", n)
	}
	if n := r.PushBatch([]uint64{11}); n != 0 {
		t.Fatalf("PushBatch into full ring = %d", n)
	}
	dst := make([]uint64, 6)
	if n := r.PopBatch(dst); n != 6 || dst[0] != 1 || dst[5] != 6 {
		t.Fatalf("PopBatch = %d %v", n, dst)
	}
	if n := r.PushBatch([]uint64{9, 10, 11, 12}); n != 4 { // wraps around the end
		t.Fatalf("wrapping PushBatch = %d", n)
	}
	if n := r.PopBatch(dst); n != 6 || dst[0] != 7 || dst[5] != 12 {
		t.Fatalf("wrapping PopBatch = %d %v", n, dst)
	}
	if n := r.PopBatch(dst); n != 0 || r.PushBatch(nil) != 0 || r.PopBatch(nil) != 0 {
		t.Fatalf("PopBatch on empty ring = %d", n)
	}
}

// TestRingMPMC moves distinct values through a small ring from several
// producers to several consumers, mixing single and batch operations, and
// checks that every value arrives exactly once.
func TestRingMPMC(t *testing.T) {
	const producers, consumers, per = 4, 4, 2000
	r, _ := NewRing(16)
	var wg sync.WaitGroup
	got := make([][]uint64, consumers)
	var done sync.WaitGroup
	done.Add(producers)
	stop := make(chan struct{})
	for p := range producers {
		go func() {
			defer done.Done()
			buf := make([]uint64, 0, 7)
			for i := 0; i < per; {
				if i%3 == 0 {
					if r.Push(uint64(p*per + i)) {
						i++
					}
					continue
				}
				buf = buf[:0]
				for j := i; j < per && len(buf) < cap(buf); j++ {
					buf = append(buf, uint64(p*per+j))
				}
				i += r.PushBatch(buf)
			}
		}()
	}
	go func() { done.Wait(); close(stop) }()
	for c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]uint64, 5)
			for {
				if c%2 == 0 {
					if v, ok := r.Pop(); ok {
						got[c] = append(got[c], v)
						continue
					}
				} else if n := r.PopBatch(dst); n > 0 {
					got[c] = append(got[c], dst[:n]...)
					continue
				}
				select {
				case <-stop:
					if r.Len() == 0 {
						return
					}
				default:
				}
			}
		}()
	}
	wg.Wait()
	seen := make([]bool, producers*per)
	for _, vs := range got {
		last := make(map[uint64]uint64) // per producer: values arrive in order
		for _, v := range vs {
			if seen[v] {
				t.Fatalf("value %d popped twice", v)
			}
			seen[v] = true
			p := v / per
			if l, ok := last[p]; ok && v < l {
				t.Fatalf("consumer saw %d after %d from the same producer", v, l)
			}
			last[p] = v
		}
	}
	for v, s := range seen {
		if !s {
			t.Fatalf("value %d lost", v)
		}
	}
}
