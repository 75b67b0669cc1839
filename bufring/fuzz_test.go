package bufring

import (
	"context"
	"errors"
	"testing"
)

// FuzzFramePool drives random sequences of pool operations on three caches
// and checks them against a model: the set of frames the user holds. After
// every operation each frame must be held exactly once or free exactly once,
// Stats must agree with the model, and a short allocation is only allowed
// when the shared ring (and, for GetRX, the reserve) is really empty. The seed
// corpus runs as part of plain `go test`.
func FuzzFramePool(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 2, 3, 0, 3, 1, 5, 0})
	f.Add([]byte{1, 5, 1, 5, 1, 5, 2, 5, 2, 5, 4, 5, 4, 5, 4, 5})
	f.Add([]byte{2, 9, 6, 3, 6, 0, 3, 1, 7, 1, 6, 4, 4, 9, 5, 1, 5, 2})
	f.Add([]byte{1, 20, 1, 20, 2, 20, 6, 0, 6, 2, 7, 0, 4, 30, 5, 0, 5, 1, 5, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const frames, frameSize, reserve = 16, 64, 2
		p, err := NewFramePool(FrameConfig{Frames: frames, FrameSize: frameSize, Reserve: reserve, CacheSize: 4, Batch: 2})
		if err != nil {
			t.Fatal(err)
		}
		caches := []*Cache{p.NewCache("a"), p.NewCache("b"), p.NewCache("c")}
		held := map[uint64]bool{}
		var order []uint64 // held frames, for picking by index
		take := func(op string, addrs ...uint64) {
			for _, a := range addrs {
				if !p.Contains(a) || held[a] {
					t.Fatalf("%s returned frame %#x: foreign or already held", op, a)
				}
				held[a] = true
				order = append(order, a)
			}
		}
		give := func(i int) uint64 {
			i %= len(order)
			a := order[i]
			order[i] = order[len(order)-1]
			order = order[:len(order)-1]
			delete(held, a)
			return a
		}
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		buf := make([]uint64, 8)
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%8, int(ops[i+1])
			c := caches[arg%len(caches)]
			before := p.Stats()
			switch op {
			case 0:
				if a, ok := c.Get(); ok {
					take("Get", a)
				} else if before.Shared != 0 {
					t.Fatalf("Get failed with %d frames in the shared ring", before.Shared)
				}
			case 1:
				k := arg % (len(buf) + 1)
				n := c.GetBatch(buf[:k])
				take("GetBatch", buf[:n]...)
				if n < k && p.main.Len() != 0 {
					t.Fatalf("GetBatch(%d) = %d with frames in the shared ring", k, n)
				}
			case 2:
				k := arg % (len(buf) + 1)
				n := c.GetRX(buf[:k])
				take("GetRX", buf[:n]...)
				if n < k && (p.main.Len() != 0 || p.rsv.Len() != 0) {
					t.Fatalf("GetRX(%d) = %d with frames in the rings", k, n)
				}
			case 3:
				if len(order) > 0 {
					c.Put(give(arg))
				}
			case 4:
				k := min(arg%6, len(order))
				for j := range k {
					buf[j] = give(arg + j)
				}
				c.PutBatch(buf[:k])
			case 5:
				c.Flush()
			case 6:
				a, err := c.Wait(cancelled, Class(arg%int(numClasses)))
				if err == nil {
					take("Wait", a)
				} else if !errors.Is(err, context.Canceled) {
					t.Fatalf("Wait with a cancelled context: %v", err)
				}
			case 7:
				c.Close()
				caches[arg%len(caches)] = p.NewCache("new")
			}
			s := p.Stats()
			if s.InUse != int64(len(held)) || s.Free+s.InUse != frames || s.Reserve > reserve || s.Waiting != 0 {
				t.Fatalf("op %d/%d: model holds %d, stats %+v", op, arg, len(held), s)
			}
			if err := p.CheckConservation(); err != nil {
				t.Fatalf("op %d/%d: %v", op, arg, err)
			}
		}
	})
}
