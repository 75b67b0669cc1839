package reuse

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/mux"
)

// Pool is a set of per-worker connection pools sharing one Config.
type Pool struct {
	cfg     Config
	workers []*Worker
	hash    func(*Params) uint64
	epoch   time.Time
	ctx     context.Context // ends at Close: aborts warm-up dials and probes
	cancel  context.CancelFunc
	closed  atomic.Bool

	// bg joins the pool's background work: graceful closes of evicted
	// connections, liveness probes and warm-up dials. Close cuts them
	// short (ctx) and waits for them.
	bg sync.WaitGroup

	staleDone     atomic.Uint64
	probeFailures atomic.Uint64

	// smu guards servers; taken when a worker first sees a server, never
	// on a hit.
	smu     sync.Mutex
	servers map[string]*server
}

// New returns a Pool with cfg.Workers workers.
func New(cfg Config) (*Pool, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		cfg:     cfg,
		hash:    (*Params).Hash,
		epoch:   cfg.Clock.Now(),
		ctx:     ctx,
		cancel:  cancel,
		servers: make(map[string]*server),
	}
	p.workers = make([]*Worker, cfg.Workers)
	for i := range p.workers {
		p.workers[i] = &Worker{
			pool:    p,
			id:      i,
			buckets: make(map[uint64]*bucket),
			servers: make(map[*server]*wserver),
			poke:    make(chan struct{}, 1),
		}
	}
	return p, nil
}

// Worker returns the shard of worker i, 0 <= i < Workers().
func (p *Pool) Worker(i int) *Worker { return p.workers[i] }

// Workers returns the number of workers.
func (p *Pool) Workers() int { return len(p.workers) }

// Config returns the configuration in use, defaults filled in.
func (p *Pool) Config() Config { return p.cfg }

func (p *Pool) server(name string) *server {
	p.smu.Lock()
	defer p.smu.Unlock()
	s := p.servers[name]
	if s == nil {
		s = &server{name: name}
		p.servers[name] = s
	}
	return s
}

// Close closes every connection at once (streams in flight fail), makes
// Attach fail with ErrPoolClosed and joins its background work (graceful
// closes, probes, warm-up dials). Leases still out may call Done safely.
func (p *Pool) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	p.cancel()
	// Close outside the workers' locks: a mux's Close may wait for its
	// connection's goroutines. New connections cannot appear (closed is set
	// and dials in flight check it), and the deaths come back through the
	// watchers; the place calls below release what is unleased.
	var conns []mux.Conn
	for _, w := range p.workers {
		w.mu.Lock()
		for _, ws := range w.servers {
			for pc := ws.all.head; pc != nil; pc = ws.all.next(pc) {
				pc.retired = true
				conns = append(conns, pc.c)
			}
		}
		w.mu.Unlock()
	}
	for _, c := range conns {
		c.Close()
	}
	for _, w := range p.workers {
		w.mu.Lock()
		w.drainInboxLocked()
		for _, ws := range w.servers {
			ws.wakeLocked(-1) // waiters return ErrPoolClosed
			for pc := ws.all.head; pc != nil; {
				next := ws.all.next(pc)
				w.place(pc)
				pc = next
			}
		}
		w.mu.Unlock()
	}
	// Background work still running ends with p.ctx.
	p.bg.Wait()
	return nil
}

// Run calls every worker's Tick each interval until ctx ends, for engines
// that do not tick the workers from their own loops.
func (p *Pool) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, w := range p.workers {
				w.Tick()
			}
		}
	}
}

// Stats sums the workers' statistics.
func (p *Pool) Stats() Stats {
	var s Stats
	for _, w := range p.workers {
		s.Add(w.Stats())
	}
	s.StaleDone = p.staleDone.Load()
	s.ProbeFailures = p.probeFailures.Load()
	return s
}

// since returns t as worker time: nanoseconds since the pool's creation
// (monotonic when the clock's times carry a monotonic reading).
func (p *Pool) since(t time.Time) int64 { return int64(t.Sub(p.epoch)) }
