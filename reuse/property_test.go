package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/muxtest"
	"github.com/xdpnet/xdpnet/reuse"
)

// model is what the property test knows independently of the pool.
type model struct {
	params  map[mux.Conn]reuse.Params   // what each connection was dialed for
	private map[mux.Conn]*reuse.Session // set by MakePrivate (or PolicyNever)
	leases  []mleaser
}

type mleaser struct {
	l    reuse.Lease
	w    int
	sess *reuse.Session
	// conn: from AttachConn; st is the stream its caller opened (nil: not
	// yet), which it finishes before Done.
	conn bool
	st   mux.Stream
}

// end finishes the caller's stream of an AttachConn lease.
func (ml *mleaser) end() {
	if ml.st != nil {
		ml.st.Close()
		ml.st = nil
	}
}

// TestPropertyRandomOps drives random sequences of attach (Attach and
// AttachConn, whose callers open their streams at random later steps), detach, credit,
// death, retry, private marking, session close, drain, purge and takeover
// (half the seeds with a 1-bit hash, so buckets collide) against a
// pool with small limits, and checks after every step that it never hands
// out a dead, full or wrong connection, never shares a private one, keeps
// its limits and internal invariants, and leaks nothing at the end.
func TestPropertyRandomOps(t *testing.T) {
	seeds, steps := 60, 300
	if testing.Short() {
		seeds = 20
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runProperty(t, uint64(seed), steps) })
		})
	}
}

func runProperty(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	m := &model{params: map[mux.Conn]reuse.Params{}, private: map[mux.Conn]*reuse.Session{}}
	var (
		mu    sync.Mutex
		conns []*muxtest.Conn
	)
	opts := muxtest.Options{MaxStreams: 1 + rng.IntN(3), AutoCredit: rng.IntN(2) == 0}
	clk := muxtest.NewClock(time.Time{})
	cfg := reuse.Config{
		Workers:          3,
		Policy:           reuse.Policy(rng.IntN(4)),
		Clock:            clk,
		MaxIdlePerServer: 1 + rng.IntN(2),
		MaxReuse:         rng.IntN(2) * 3,
		MaxStreams:       rng.IntN(2) * 2,
		MaxSessionConns:  1,
		PoolLowConn:      rng.IntN(2),
		PurgeDelay:       time.Second,
		MaxIdleAge:       5 * time.Second,
		ProbeInterval:    2 * time.Second,
		Dial: func(ctx context.Context, p reuse.Params) (mux.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			c := muxtest.NewConn(opts)
			if len(conns)%7 == 6 {
				c.SetPing(errors.New("no ack")) // some connections fail their probe
			}
			conns = append(conns, c)
			m.params[c] = p
			return c, nil
		},
	}
	if rng.IntN(3) == 0 {
		cfg.MaxConnsPerServer = 4
	}
	pool, err := reuse.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() }) // ends background shutdowns if a check fails
	if seed%2 == 1 {
		reuse.SetHash(pool, func(p *reuse.Params) uint64 { return p.Hash() & 1 }) // collisions galore
	}
	ps := []reuse.Params{*params("a"), *params("a"), *params("b")}
	ps[1].SNI = "other.example"
	sessions := make([][]*reuse.Session, cfg.Workers)
	for w := range sessions {
		for range 3 {
			sessions[w] = append(sessions[w], pool.Worker(w).NewSession())
		}
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel() // OpenStream must never need to wait: a canceled ctx makes waiting fail

	check := func(step int, op string) {
		t.Helper()
		synctest.Wait()
		owner := map[mux.Conn]int{}
		for w := range cfg.Workers {
			if err := reuse.Check(pool.Worker(w)); err != nil {
				t.Fatalf("step %d (%s): worker %d: %v", step, op, w, err)
			}
			for c, tr := range reuse.Owned(pool.Worker(w)) {
				if o, dup := owner[c]; dup {
					t.Fatalf("step %d (%s): conn owned by workers %d and %d", step, op, o, w)
				}
				owner[c] = w
				if tr == "private" && m.private[c] == nil {
					t.Fatalf("step %d (%s): conn private without MakePrivate", step, op)
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			if _, ok := owner[c]; !ok && !c.Dead() && !c.IsShutdown() {
				t.Fatalf("step %d (%s): connection leaked: not owned, not closed", step, op)
			}
		}
		if st := pool.Stats(); st.Leases != len(m.leases) || st.OpenErrors != 0 {
			t.Fatalf("step %d (%s): %d leases out, pool says %d; open errors %d", step, op, len(m.leases), st.Leases, st.OpenErrors)
		}
	}

	for step := range steps {
		var op string
		switch r := rng.IntN(110); {
		case r >= 100: // an AttachConn caller opens its stream
			if len(m.leases) == 0 {
				break
			}
			ml := &m.leases[rng.IntN(len(m.leases))]
			if !ml.conn || ml.st != nil {
				break
			}
			op = "caller-open"
			c := ml.l.Conn().(*muxtest.Conn)
			st, err := c.OpenStream(canceled) // the pool kept credit for it: no wait
			switch {
			case err == nil:
				ml.st = st
			case c.Dead() || c.IsShutdown():
			default:
				t.Fatalf("step %d: open on the leased credit: %v", step, err)
			}
		case r < 40: // attach
			w := rng.IntN(cfg.Workers)
			p := ps[rng.IntN(len(ps))]
			var s *reuse.Session
			if k := rng.IntN(4); k < 3 {
				s = sessions[w][k]
			}
			op = "attach"
			attach, conn := pool.Worker(w).Attach, rng.IntN(2) == 0
			if conn {
				op, attach = "attach-conn", pool.Worker(w).AttachConn
			}
			l, err := attach(canceled, &p, s)
			switch {
			case errors.Is(err, reuse.ErrTooManyConns) && cfg.MaxConnsPerServer > 0:
				break
			case err != nil:
				t.Fatalf("step %d: attach: %v", step, err)
			default:
				c := l.Conn().(*muxtest.Conn)
				if c.Dead() || c.IsShutdown() {
					t.Fatalf("step %d: handed out a dead connection", step)
				}
				mu.Lock()
				dialed := m.params[c]
				mu.Unlock()
				if dialed != p {
					t.Fatalf("step %d: handed out a connection for %+v, asked %+v", step, dialed, p)
				}
				if owner := m.private[c]; owner != nil && owner != s {
					t.Fatalf("step %d: private connection shared with another session", step)
				}
				if cfg.Policy == reuse.PolicyNever && s != nil {
					m.private[c] = s
				}
				if conn != (l.Stream() == nil) {
					t.Fatalf("step %d: %s lease with stream %v", step, op, l.Stream())
				}
				m.leases = append(m.leases, mleaser{l: l, w: w, sess: s, conn: conn})
			}
		case r < 65 && len(m.leases) > 0: // detach
			i := rng.IntN(len(m.leases))
			op = "done"
			var err error
			if rng.IntN(4) == 0 {
				err = errReset
			}
			m.leases[i].end()
			m.leases[i].l.Done(err)
			m.leases = append(m.leases[:i], m.leases[i+1:]...)
		case r < 67 && len(m.leases) > 0: // retry a request that failed before any response byte
			i := rng.IntN(len(m.leases))
			op = "retry"
			ml := m.leases[i]
			m.leases = append(m.leases[:i], m.leases[i+1:]...)
			ml.end()
			mu.Lock()
			p := m.params[ml.l.Conn()]
			mu.Unlock()
			reused := ml.l.Reused()
			l, err := pool.Worker(ml.w).Retry(canceled, ml.l, errReset)
			if ml.l.Conn() != nil || ml.l.Stream() != nil || ml.l.Reused() {
				t.Fatalf("step %d: lease still usable after Retry ended it", step)
			}
			switch {
			case !reused:
				if !errors.Is(err, reuse.ErrNotRetryable) {
					t.Fatalf("step %d: retry of a fresh connection's request: %v", step, err)
				}
			case errors.Is(err, reuse.ErrTooManyConns) && cfg.MaxConnsPerServer > 0:
			case err != nil:
				t.Fatalf("step %d: retry: %v", step, err)
			default:
				mu.Lock()
				dialed := m.params[l.Conn()]
				mu.Unlock()
				if l.Reused() || dialed != p || ml.conn != (l.Stream() == nil) {
					t.Fatalf("step %d: retry not on a fresh connection for the same params and mode", step)
				}
				if cfg.Policy == reuse.PolicyNever && ml.sess != nil {
					m.private[l.Conn()] = ml.sess
				}
				m.leases = append(m.leases, mleaser{l: l, w: ml.w, sess: ml.sess, conn: ml.conn})
			}
		case r < 70 && len(m.leases) > 0: // mark private
			i := rng.IntN(len(m.leases))
			op = "private"
			ml := m.leases[i]
			if ml.sess != nil {
				if prev := m.private[ml.l.Conn()]; prev == nil {
					if err := ml.l.MakePrivate(); err != nil {
						t.Fatal(err)
					}
					m.private[ml.l.Conn()] = ml.sess
				}
			}
		case r < 78: // credit
			op = "grant"
			mu.Lock()
			var c *muxtest.Conn
			if len(conns) > 0 {
				c = conns[rng.IntN(len(conns))]
			}
			mu.Unlock()
			if c != nil {
				c.Grant(1 + rng.IntN(2))
			}
		case r < 84: // death
			op = "kill"
			mu.Lock()
			var c *muxtest.Conn
			if len(conns) > 0 {
				c = conns[rng.IntN(len(conns))]
			}
			mu.Unlock()
			if c != nil {
				c.Kill(errors.New("peer reset"))
			}
		case r < 92: // timers, on one or all workers
			op = "tick"
			clk.Advance(time.Duration(rng.IntN(1500)) * time.Millisecond)
			for w := range cfg.Workers {
				pool.Worker(w).Tick()
			}
		default: // session ends
			op = "close-session"
			w, k := rng.IntN(cfg.Workers), rng.IntN(3)
			sessions[w][k].Close() // its busy private conns stay private until they close
			sessions[w][k] = pool.Worker(w).NewSession()
		}
		if op != "" {
			check(step, op)
		}
	}

	// Nothing leaks: end every lease and session, close the pool.
	for _, ml := range m.leases {
		ml.end()
		ml.l.Done(nil)
	}
	m.leases = nil
	for w := range sessions {
		for _, s := range sessions[w] {
			s.Close()
		}
	}
	check(steps, "end")
	pool.Close()
	synctest.Wait()
	if st := pool.Stats(); st.Conns != 0 || st.Leases != 0 {
		t.Fatalf("after close: %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, c := range conns {
		if !c.Dead() {
			t.Fatalf("connection %d still open after Close", i)
		}
	}
}
