package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/muxtest"
	"github.com/xdpnet/xdpnet/reuse"
)

// addrPool is the baseline: one mutex and a map keyed by the server address
// alone, scanning the address's connections for one with credit, as simple
// multiplexed pools do (tRPC-Go's pool/multiplexed keys by ip:port).
type addrPool struct {
	mu sync.Mutex
	m  map[string][]mux.Conn
}

func (p *addrPool) get(ctx context.Context, addr string) (mux.Conn, mux.Stream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.m[addr] {
		if c.Alive() && c.AvailStreams() > 0 {
			st, err := c.OpenStream(ctx)
			return c, st, err
		}
	}
	return nil, nil, errors.New("miss")
}

// BenchmarkAttachDetachHit measures Attach plus Lease.Done on a hit (a later
// request of a session on a connection with credit), beside the baseline's
// get plus stream close on the same fake connection. The fake's own
// OpenStream and Close are included in both. impl=xdpnet-conn is the HTTP/3
// path: AttachConnKey, then the caller opens and closes its stream on the
// leased connection before Done.
func BenchmarkAttachDetachHit(b *testing.B) {
	opts := muxtest.Options{MaxStreams: 1 << 30, AutoCredit: true, RecycleStreams: true}
	for _, impl := range []string{"xdpnet", "xdpnet-key", "xdpnet-conn"} {
		b.Run("impl="+impl, func(b *testing.B) {
			pool, err := reuse.New(reuse.Config{Dial: func(context.Context, reuse.Params) (mux.Conn, error) {
				return muxtest.NewConn(opts), nil
			}})
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			w := pool.Worker(0)
			p := params("s1")
			k := reuse.NewKey(*p)
			attach := func(ctx context.Context, s *reuse.Session) (reuse.Lease, error) {
				switch impl {
				case "xdpnet-key":
					return w.AttachKey(ctx, k, s)
				case "xdpnet-conn":
					l, err := w.AttachConnKey(ctx, k, s)
					if err != nil {
						return l, err
					}
					st, err := l.Conn().OpenStream(ctx)
					if err != nil {
						return l, err
					}
					st.Close() // the request ends before Done
					return l, nil
				}
				return w.Attach(ctx, p, s)
			}
			s := w.NewSession()
			ctx := context.Background()
			for range 2 { // dial, then prove the connection
				l, err := attach(ctx, s)
				if err != nil {
					b.Fatal(err)
				}
				l.Done(nil)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				l, err := attach(ctx, s)
				if err != nil {
					b.Fatal(err)
				}
				l.Done(nil)
			}
			b.StopTimer()
			reportCPU(b, cpu0)
			if st := pool.Stats(); st.Dials != 1 {
				b.Fatalf("%d dials", st.Dials)
			}
		})
	}
	b.Run("impl=baseline", func(b *testing.B) {
		addr := params("s1").Dst.String()
		bp := &addrPool{m: map[string][]mux.Conn{addr: {muxtest.NewConn(opts)}}}
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cpuTime()
		for b.Loop() {
			_, st, err := bp.get(ctx, addr)
			if err != nil {
				b.Fatal(err)
			}
			st.Close()
		}
		b.StopTimer()
		reportCPU(b, cpu0)
	})
}

// BenchmarkAttachDetachParallel runs the hit of BenchmarkAttachDetachHit on
// every P at once: with xdpnet each goroutine is a worker with its own shard
// (the design: no lock shared between workers on the hit path); the
// baseline's goroutines share its one mutex and map (each with its own
// connection, so only the pool's lock is shared).
func BenchmarkAttachDetachParallel(b *testing.B) {
	opts := muxtest.Options{MaxStreams: 1 << 30, AutoCredit: true, RecycleStreams: true}
	procs := runtime.GOMAXPROCS(0)
	b.Run("impl=xdpnet", func(b *testing.B) {
		pool, err := reuse.New(reuse.Config{Workers: procs, Dial: func(context.Context, reuse.Params) (mux.Conn, error) {
			return muxtest.NewConn(opts), nil
		}})
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		k := reuse.NewKey(*params("s1"))
		var next atomic.Int32
		b.ReportAllocs()
		cpu0 := cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			w := pool.Worker(int(next.Add(1)-1) % procs)
			s := w.NewSession()
			ctx := context.Background()
			for pb.Next() {
				l, err := w.AttachKey(ctx, k, s)
				if err != nil {
					b.Error(err)
					return
				}
				l.Done(nil)
			}
		})
		b.StopTimer()
		reportCPU(b, cpu0)
	})
	b.Run("impl=baseline", func(b *testing.B) {
		bp := &addrPool{m: map[string][]mux.Conn{}}
		addrs := make([]string, procs)
		for i := range addrs {
			addrs[i] = fmt.Sprint("198.18.2.", 10+i, ":443")
			bp.m[addrs[i]] = []mux.Conn{muxtest.NewConn(opts)}
		}
		var next atomic.Int32
		b.ReportAllocs()
		cpu0 := cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			addr := addrs[int(next.Add(1)-1)%procs]
			ctx := context.Background()
			for pb.Next() {
				_, st, err := bp.get(ctx, addr)
				if err != nil {
					b.Error(err)
					return
				}
				st.Close()
			}
		})
		b.StopTimer()
		reportCPU(b, cpu0)
	})
}

// BenchmarkReuseRatio simulates a steady load on 4 workers x 200 servers and
// reports the share of requests that did not wait for a new connection
// (reuse-%) after 100,000 requests of warm-up, and over the whole run, cold
// start included (cold-reuse-%). One op is one request.
//
// Load: every simulated millisecond each worker starts Poisson(5) requests
// (5000 req/s per worker) to uniformly chosen servers; a request holds its
// stream for an exponential time of mean 20ms, so each (worker, server)
// pair has 0.5 requests in flight on average and is often idle between
// requests. Clients are sessions of geometric length (mean 10 requests), so
// one request in ten is a session's first. 0.5% of requests fail (the
// connection stays unproven), and 0.01% of connections are closed by the
// server after a request. QUIC-like credit: 100 streams, returned as streams
// end. Pool defaults (16 idle per server and worker, purge every 5s) and a
// 60s maximum idle age, Tick every 10ms.
func BenchmarkReuseRatio(b *testing.B) {
	for _, pol := range []reuse.Policy{reuse.PolicySafe, reuse.PolicyAggressive, reuse.PolicyAlways} {
		b.Run("policy="+pol.String(), func(b *testing.B) { benchReuse(b, pol, false) })
	}
	b.Run("policy=safe-retryable", func(b *testing.B) { benchReuse(b, reuse.PolicySafe, true) })
}

func benchReuse(b *testing.B, pol reuse.Policy, retryable bool) {
	const (
		workers       = 4
		servers       = 200
		arrivalsPerMs = 5.0
		holdMeanMs    = 20.0
	)
	rng := rand.New(rand.NewPCG(1, 2))
	clk := muxtest.NewClock(time.Time{})
	pool, err := reuse.New(reuse.Config{
		Workers:        workers,
		Policy:         pol,
		RetryableFirst: retryable,
		Clock:          clk,
		MaxIdleAge:     time.Minute,
		Dial: func(context.Context, reuse.Params) (mux.Conn, error) {
			return muxtest.NewConn(muxtest.Options{MaxStreams: 100, AutoCredit: true, RecycleStreams: true}), nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ps := make([]reuse.Params, servers)
	for i := range ps {
		ps[i] = *params(fmt.Sprint("srv", i))
	}
	type inflight struct {
		l   reuse.Lease
		end int64
	}
	type wstate struct {
		sess *reuse.Session
		left int
		held []inflight
	}
	ws := make([]wstate, workers)
	ctx := context.Background()
	// The first warmup requests (the cold start: 800 empty worker-server
	// pairs) are not timed and not in reuse-%, so the figure does not
	// depend on b.N; cold-reuse-% counts them too.
	const warmup = 100_000
	var warm reuse.Stats
	n := warmup + b.N
	done := 0
	for now := int64(0); done < n; now++ {
		clk.Advance(time.Millisecond)
		for w := range ws {
			st := &ws[w]
			wk := pool.Worker(w)
			// Requests that end now.
			kept := st.held[:0]
			for _, f := range st.held {
				if f.end > now {
					kept = append(kept, f)
					continue
				}
				var err error
				if rng.Float64() < 0.005 {
					err = errReset
				}
				c := f.l.Conn()
				f.l.Done(err)
				if rng.Float64() < 0.0001 {
					c.Close()
				}
			}
			st.held = kept
			for k := poisson(rng, arrivalsPerMs); k > 0 && done < n; k-- {
				if st.left == 0 {
					if st.sess != nil {
						st.sess.Close()
					}
					st.sess = wk.NewSession()
					st.left = 1 + int(rng.ExpFloat64()*9)
				}
				st.left--
				l, err := wk.Attach(ctx, &ps[rng.IntN(servers)], st.sess)
				if err != nil {
					b.Fatal(err)
				}
				st.held = append(st.held, inflight{l, now + 1 + int64(rng.ExpFloat64()*holdMeanMs)})
				done++
				if done == warmup {
					warm = pool.Stats()
					b.ResetTimer()
				}
			}
			if now%10 == 0 {
				wk.Tick()
			}
		}
	}
	b.StopTimer()
	st := pool.Stats()
	b.ReportMetric(100*st.ReuseRatio(), "cold-reuse-%")
	steady := st
	steady.Attaches -= warm.Attaches
	steady.Misses -= warm.Misses
	steady.Dials -= warm.Dials
	steady.Takeovers -= warm.Takeovers
	b.ReportMetric(100*steady.ReuseRatio(), "reuse-%")
	b.ReportMetric(steady.RequestsPerConn(), "req/conn")
	b.ReportMetric(float64(steady.Takeovers)/float64(steady.Attaches)*100, "takeover-%")
	for w := range ws {
		for _, f := range ws[w].held {
			f.l.Done(nil)
		}
	}
}

// cpuTime is the process's user+system CPU time: on a machine shared with
// other work it is steadier than wall time per op.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// poisson draws a Poisson(mean) count (Knuth's method; mean is small).
func poisson(rng *rand.Rand, mean float64) int {
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
