package bufring

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestStressConservation runs many workers, each owning a Cache, against a
// small pool: they get, put, batch, wait with short deadlines, take from the
// reserve and hand frames to each other (cross-worker release). At the end
// every frame must be accounted for exactly once. Run it with -race; the
// debug build tag adds per-frame ownership checks on every operation.
func TestStressConservation(t *testing.T) {
	const workers = 8
	iters := 20000
	if testing.Short() {
		iters = 3000
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	p := newPool(t, FrameConfig{Frames: 64, FrameSize: 2048, Reserve: 4, CacheSize: 8, Batch: 4})
	mail := make([]chan uint64, workers) // frames handed to another worker
	for i := range mail {
		mail[i] = make(chan uint64, 64)
	}
	var wg sync.WaitGroup
	held := make([][]uint64, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.NewCache("w" + string(rune('0'+w)))
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var mine []uint64
			buf := make([]uint64, 6)
			for range iters {
				select {
				case a := <-mail[w]:
					mine = append(mine, a)
				default:
				}
				switch op := rng.IntN(10); {
				case op < 3:
					if a, ok := c.Get(); ok {
						mine = append(mine, a)
					}
				case op == 3:
					n := c.GetBatch(buf[:rng.IntN(len(buf))+1])
					mine = append(mine, buf[:n]...)
				case op == 4 && w == 0:
					n := c.GetRX(buf[:rng.IntN(len(buf))+1])
					mine = append(mine, buf[:n]...)
				case op == 5:
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(200))*time.Microsecond)
					if a, err := c.Wait(ctx, Class(rng.IntN(int(numClasses)))); err == nil {
						mine = append(mine, a)
					}
					cancel()
				case op == 6 && len(mine) > 0:
					select {
					case mail[rng.IntN(workers)] <- mine[len(mine)-1]:
						mine = mine[:len(mine)-1]
					default:
					}
				case op < 9 && len(mine) > 0:
					i := rng.IntN(len(mine))
					c.Put(mine[i])
					mine[i] = mine[len(mine)-1]
					mine = mine[:len(mine)-1]
				case len(mine) > 0:
					k := rng.IntN(len(mine)) + 1
					c.PutBatch(mine[len(mine)-k:])
					mine = mine[:len(mine)-k]
				}
				if len(mine) > 12 { // bound what one worker hoards
					c.PutBatch(mine)
					mine = mine[:0]
				}
			}
			held[w] = mine
			if w%2 == 0 {
				c.Close()
			}
		}()
	}
	wg.Wait()
	for w := range workers {
		close(mail[w])
		for a := range mail[w] {
			held[w] = append(held[w], a)
		}
	}
	checkConservation(t, p) // frames still held by workers count as in use
	back := p.NewCache("final")
	for _, mine := range held {
		back.PutBatch(mine)
	}
	checkConservation(t, p)
	s := p.Stats()
	if s.InUse != 0 || s.Waiting != 0 || s.Free != 64 || s.Reserve != 4 {
		t.Fatalf("final stats: %+v", s)
	}
	t.Logf("waits %d (failed %d), handoffs %d, passed on %d, reserve taken %d, failures %d, high water %d",
		s.Waits, s.WaitFailures, s.Handoffs, s.PassedOn, s.ReserveTaken, s.Failures, s.HighWater)
}
