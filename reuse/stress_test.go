package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/muxtest"
	"github.com/xdpnet/xdpnet/reuse"
)

var errPeerReset = errors.New("peer reset")

// hold is a lease held by a stress goroutine.
type hold struct {
	l  reuse.Lease
	st mux.Stream // the caller's stream of an AttachConn lease
}

// end finishes the caller's stream, then the lease.
func (h hold) end(err error) {
	if h.st != nil {
		h.st.Close()
	}
	h.l.Done(err)
}

// TestStressConcurrent runs several workers' goroutines attaching and
// detaching while others grant credit, kill connections and tick, so that
// takeovers, watcher events from foreign goroutines and detaches interleave.
// Half the leases come from AttachConn, whose callers open their stream
// outside the pool's lock: that open must never wait for credit.
// Run it with -race. Bounded in operations, not in time.
func TestStressConcurrent(t *testing.T) {
	const workers, perWorker, servers = 4, 2, 5
	ops := 3000
	if testing.Short() {
		ops = 500
	}
	var (
		mu    sync.Mutex
		conns []*muxtest.Conn
	)
	clk := muxtest.NewClock(time.Time{})
	pool, err := reuse.New(reuse.Config{
		Workers:          workers,
		Policy:           reuse.PolicyAlways,
		Clock:            clk,
		MaxIdlePerServer: 2,
		MaxReuse:         50,
		PurgeDelay:       time.Second,
		MaxIdleAge:       3 * time.Second,
		ProbeInterval:    time.Second,
		Dial: func(ctx context.Context, p reuse.Params) (mux.Conn, error) {
			c := muxtest.NewConn(muxtest.Options{MaxStreams: 3, AutoCredit: true})
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			return c, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ps := make([]reuse.Params, servers)
	for i := range ps {
		ps[i] = *params(fmt.Sprint("s", i))
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range workers {
		for g := range perWorker {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), uint64(g)))
				wk := pool.Worker(w)
				s := wk.NewSession()
				var held []hold
				canceled, cancel := context.WithCancel(context.Background())
				cancel()
				for i := range ops {
					if len(held) < 4 && rng.IntN(3) != 0 {
						attach, conn := wk.Attach, rng.IntN(2) == 0
						if conn {
							attach = wk.AttachConn
						}
						l, err := attach(context.Background(), &ps[rng.IntN(servers)], s)
						if errors.Is(err, errPeerReset) {
							continue // a fresh connection was killed before its first stream
						}
						if err != nil {
							t.Errorf("attach: %v", err)
							break
						}
						c := l.Conn().(*muxtest.Conn)
						if !c.Alive() && !c.Dead() {
							t.Errorf("handed out a connection that is shutting down")
						}
						h := hold{l: l}
						if conn {
							h.st, err = c.OpenStream(canceled) // credit kept for us: no wait
							if err != nil && !c.Dead() {
								t.Errorf("open on the leased credit: %v", err)
							}
						}
						held = append(held, h)
					} else if len(held) > 0 {
						k := rng.IntN(len(held))
						var err error
						if rng.IntN(5) == 0 {
							err = errReset
						}
						held[k].end(err)
						held = append(held[:k], held[k+1:]...)
					}
					if i%500 == 499 {
						s.Close()
						s = wk.NewSession()
					}
				}
				for _, h := range held {
					h.end(nil)
				}
				s.Close()
			}()
		}
	}
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // the peers: credit and deaths from foreign goroutines
		defer bg.Done()
		rng := rand.New(rand.NewPCG(99, 99))
		for {
			select {
			case <-stop:
				return
			default:
			}
			runtime.Gosched()
			mu.Lock()
			var c *muxtest.Conn
			if len(conns) > 0 {
				c = conns[rng.IntN(len(conns))]
			}
			mu.Unlock()
			if c == nil {
				continue
			}
			if rng.IntN(10) == 0 {
				c.Kill(errPeerReset)
			} else {
				c.Grant(1)
			}
		}
	}()
	go func() { // timers
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			runtime.Gosched()
			clk.Advance(100 * time.Millisecond)
			for w := range workers {
				pool.Worker(w).Tick()
			}
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()

	st := pool.Stats()
	for w := range workers {
		if err := reuse.Check(pool.Worker(w)); err != nil {
			t.Fatalf("worker %d: %v", w, err)
		}
	}
	if st.Leases != 0 {
		t.Fatalf("%d leases leaked", st.Leases)
	}
	t.Logf("stats: %+v reuse %.3f", st, st.ReuseRatio())
	pool.Close()
	mu.Lock()
	defer mu.Unlock()
	for _, c := range conns {
		waitDone(t, c)
	}
}
