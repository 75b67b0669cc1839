package reuse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/mux"
)

// Worker is the pool of one engine worker. Its methods are safe for
// concurrent use, but it is meant to be used by the goroutines of one worker:
// its mutex is then uncontended except during another worker's takeover (see
// the package documentation).
type Worker struct {
	pool  *Pool
	id    int
	inbox atomic.Pointer[pconn] // lock-free stack of connections with pending watcher events
	// waiting counts Attach calls waiting for credit or a dial slot; while
	// it is not zero, a watcher event pokes one of them to drain the inbox.
	waiting atomic.Int32
	poke    chan struct{}

	// mu guards the fields below and the fields of the pconns this worker owns.
	mu        sync.Mutex
	now       int64 // worker time of the last Tick
	lastPurge int64
	buckets   map[uint64]*bucket
	servers   map[*server]*wserver
	free      []*leaseRec // recycled lease records
	rr        int         // takeover rotation
	st        Stats
}

// ID returns the worker's index in its Pool.
func (w *Worker) ID() int { return w.id }

// NewSession returns a client session of this worker. Close it when the
// client connection ends: that closes its private connections.
func (w *Worker) NewSession() *Session {
	return &Session{w: w, conns: plist{slot: slotLRU}}
}

// Attach returns a Lease on a stream of a connection for p, reusing a
// connection when the policy allows, else taking one over from another
// worker, else dialing one; it never waits for stream credit. s may be nil
// (then every request counts as a session's first). The caller must call
// Done on the Lease exactly once. ctx bounds the dial and OpenStream.
func (w *Worker) Attach(ctx context.Context, p *Params, s *Session) (Lease, error) {
	return w.attach(ctx, p, w.pool.hash(p), s, false, true, false)
}

// AttachKey is Attach with the hash precomputed in k.
func (w *Worker) AttachKey(ctx context.Context, k *Key, s *Session) (Lease, error) {
	return w.attach(ctx, &k.p, k.h, s, false, true, false)
}

// AttachConn is Attach for callers that open the stream themselves, such as
// an HTTP/3 client (h3.Client) on the chosen connection: it picks the
// connection as Attach does but opens no stream; the Lease reserves one
// stream of the connection's credit instead, and Lease.Stream is nil. The
// reserved credit counts as used until Done, so other leases never take it.
//
// The caller opens at most one bidirectional stream on Lease.Conn for the
// lease, through the mux's accounting (OpenStream or h3.Client, whose
// streams count in UsedStreams from the moment they take credit), and
// finishes it (or ends the request) before Done. With the credit checked
// under the worker's mutex, that open does not wait for the peer, except on
// a connection dialed for the lease whose peer granted no credit yet (as
// Attach's own OpenStream would). No other bidirectional streams may be
// opened on a connection leased this way.
func (w *Worker) AttachConn(ctx context.Context, p *Params, s *Session) (Lease, error) {
	return w.attach(ctx, p, w.pool.hash(p), s, false, false, false)
}

// AttachConnKey is AttachConn with the hash precomputed in k.
func (w *Worker) AttachConnKey(ctx context.Context, k *Key, s *Session) (Lease, error) {
	return w.attach(ctx, &k.p, k.h, s, false, false, false)
}

// AttachConnKeyRetryable is AttachConnKey for a request that the caller
// sends again through Retry if its connection fails before any response
// byte: an idempotent request (RFC 9110 section 9.2.2) whose body can be
// replayed. Such a request is as safe on an idle connection as a session's
// later one, so the policy treats it as one, as Config.RetryableFirst does
// for every request of a pool.
func (w *Worker) AttachConnKeyRetryable(ctx context.Context, k *Key, s *Session) (Lease, error) {
	return w.attach(ctx, &k.p, k.h, s, false, false, true)
}

// Retry retries the request of failed, which failed with cause before any
// byte of the response was received: it calls failed.Done(cause) and, if the
// connection had carried a request before (Lease.Reused: it may have gone
// stale while idle), attaches again on a freshly dialed connection, the way
// failed was attached (Attach or AttachConn). Otherwise it returns
// ErrNotRetryable.
func (w *Worker) Retry(ctx context.Context, failed Lease, cause error) (Lease, error) {
	r := failed.live()
	if r == nil {
		return Lease{}, ErrStaleLease
	}
	p := r.p
	prm := p.b.params // immutable; p.b and p.hash do not change while leased
	s, reused, open := r.sess, r.reused, !r.credit
	failed.Done(cause)
	if !reused {
		return Lease{}, fmt.Errorf("%w: %w", ErrNotRetryable, cause)
	}
	return w.attach(ctx, &prm, p.hash, s, true, open, false)
}

// attach serves Attach (open: the pool opens the lease's stream) and
// AttachConn (the caller does), and Retry; retryable treats a session's
// first request as a later one.
//
// With no connection to take, it dials only if that is needed and allowed:
// requests already waiting do not outnumber the streams the dials in flight
// are expected to bring, and fewer than MaxDialsPerServer are in flight.
// Otherwise it waits, oldest first, for a lease's credit, a dial or a peer's
// MAX_STREAMS, at most QueueTimeout. A waiter that counted on a dial that
// failed fails with that dial's error rather than try the server again
// itself. A Retry dials a fresh connection without waiting.
func (w *Worker) attach(ctx context.Context, prm *Params, h uint64, s *Session, retry, open, retryable bool) (Lease, error) {
	pool := w.pool
	if pool.closed.Load() {
		return Lease{}, ErrPoolClosed
	}
	if s != nil && s.w != w {
		return Lease{}, ErrForeignSession
	}
	cfg := &pool.cfg
	w.mu.Lock()
	w.drainInboxLocked()
	b := w.bucketLocked(h, prm)
	ws := b.ws
	ws.last = b
	first := !cfg.RetryableFirst && !retryable
	if s != nil {
		first = first && s.reqs == 0
		if !retry {
			s.reqs++
		}
	}
	var (
		timer     *time.Timer
		waited    bool
		failsSeen = ws.dialFails
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if pool.closed.Load() {
			w.mu.Unlock()
			return Lease{}, ErrPoolClosed
		}
		if !retry {
			if l, ok := w.tryAll(ctx, b, s, first, open); ok {
				w.mu.Unlock()
				return l, nil
			}
			if waited && ws.dialFails != failsSeen {
				err := ws.dialErr
				w.mu.Unlock()
				return Lease{}, fmt.Errorf("reuse: dial %s (waited for): %w", prm.Server, err)
			}
		}
		atMax := cfg.MaxConnsPerServer > 0 && ws.conns >= cfg.MaxConnsPerServer
		expected := 0
		if cfg.Policy != PolicyNever { // else every dial is some session's own
			expected = ws.dialing * expectedStreams(cfg)
		}
		if retry && !atMax || !atMax && len(ws.waiters) >= expected && ws.dialing < cfg.MaxDialsPerServer {
			break
		}
		// Wait for credit, a dial, or a slot.
		if timer == nil {
			timer = time.NewTimer(cfg.QueueTimeout)
		}
		ch := make(chan struct{}, 1)
		ws.waiters = append(ws.waiters, ch)
		w.waiting.Add(1)
		w.st.Queued++
		w.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-w.poke:
		case <-timer.C:
			err = ErrQueueTimeout
			if atMax {
				err = fmt.Errorf("%w: %w", ErrQueueTimeout, ErrTooManyConns)
			}
		case <-ctx.Done():
			err = ctx.Err()
			if atMax {
				err = fmt.Errorf("%w, waiting for a slot: %w", ErrTooManyConns, err)
			}
		}
		w.waiting.Add(-1)
		w.mu.Lock()
		ws.forgetLocked(ch)
		w.drainInboxLocked()
		if err != nil {
			if errors.Is(err, ErrQueueTimeout) {
				w.st.QueueTimeouts++
			}
			// A wake meant for this waiter goes to the next one.
			select {
			case <-ch:
				ws.wakeLocked(1)
			default:
			}
			w.mu.Unlock()
			return Lease{}, err
		}
		waited = true
	}
	// Dial without the lock; the reservation keeps ws and b alive and
	// counts against MaxConnsPerServer and MaxDialsPerServer.
	ws.conns++
	ws.dialing++
	b.conns++
	w.mu.Unlock()

	c, err := cfg.Dial(ctx, b.params)
	if err == nil && c == nil {
		err = errNoConn
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.drainInboxLocked()
	ws.dialing--
	if err != nil {
		ws.conns--
		b.conns--
		w.st.DialErrors++
		ws.dialFails++
		ws.dialErr = err
		ws.wakeLocked(-1) // those counting on this dial learn it failed
		return Lease{}, fmt.Errorf("reuse: dial %s: %w", prm.Server, err)
	}
	p := w.adoptLocked(c, b)
	if cfg.Policy == PolicyNever {
		if s != nil {
			w.makePrivateLocked(p, s)
		} else {
			p.retired = true
		}
	}
	if pool.closed.Load() {
		p.retired = true
		w.place(p)
		ws.wakeLocked(-1)
		return Lease{}, ErrPoolClosed
	}
	l, err := w.openLocked(ctx, p, s, &w.st.Misses, 0, open)
	// Whatever credit the new connection has left serves the waiters, and
	// one more learns that a dial slot freed up, in case the waiters
	// still outnumber what the dials in flight will bring.
	ws.wakeLocked(p.credit(cfg) + 1)
	if err != nil {
		return Lease{}, fmt.Errorf("reuse: open stream on new connection to %s: %w", prm.Server, err)
	}
	if retry {
		w.st.Retries++
	}
	return l, nil
}

// expectedStreams is how many leases a connection being dialed is counted
// on to take: MaxStreams, or 100, the least stream limit HTTP/3 servers
// should grant (RFC 9114 section 6.1).
func expectedStreams(cfg *Config) int {
	if cfg.MaxStreams > 0 {
		return cfg.MaxStreams
	}
	return 100
}

// tryAll looks for a connection to take, in order: the session's private
// ones, the shared trees, another worker's idle ones.
func (w *Worker) tryAll(ctx context.Context, b *bucket, s *Session, first, open bool) (Lease, bool) {
	cfg := &w.pool.cfg
	if s != nil {
		if l, ok := w.tryPrivate(ctx, s, b, open); ok {
			return l, true
		}
	}
	if cfg.Policy == PolicyNever {
		return Lease{}, false
	}
	if l, ok := w.tryShared(ctx, b, s, first, open); ok {
		return l, true
	}
	ws := b.ws
	if ws.conns >= cfg.PoolLowConn && (cfg.MaxConnsPerServer == 0 || ws.conns < cfg.MaxConnsPerServer) {
		return w.tryTakeover(ctx, b, s, first, open)
	}
	return Lease{}, false
}

// tryPrivate looks for a usable private connection of s for b.
func (w *Worker) tryPrivate(ctx context.Context, s *Session, b *bucket, open bool) (Lease, bool) {
	cfg := &w.pool.cfg
	for p := s.conns.head; p != nil; {
		next := s.conns.next(p)
		if p.b == b {
			if n := p.credit(cfg); n > 0 {
				if l, err := w.openLocked(ctx, p, s, &w.st.HitPrivate, n, open); err == nil {
					return l, true
				}
			} else if !p.c.Alive() {
				w.place(p)
			}
		}
		p = next
	}
	return Lease{}, false
}

// tryShared looks in b's avail, safe and idle trees, in that order, as the
// policy allows for a first or a later request. Any policy but never may use
// avail for a first request: a connection with streams in flight is not idle,
// so the server will not close it for idleness under the request, which is
// the race the policies guard against.
func (w *Worker) tryShared(ctx context.Context, b *bucket, s *Session, first, open bool) (Lease, bool) {
	cfg := &w.pool.cfg
	// The connection with the most stream credit takes the request, so
	// that requests spread over the server's connections by the streams
	// their peers grant (issue 19) rather than pile on the newest.
	var tried []*pconn
	for {
		var best *pconn
		bestN := 0
		for p := b.avail.head; p != nil; {
			next := b.avail.next(p)
			if n := p.credit(cfg); n == 0 {
				w.place(p) // full, exhausted or dead: out of avail
			} else if n > bestN && !slices.Contains(tried, p) {
				best, bestN = p, n
			}
			p = next
		}
		if best == nil {
			break
		}
		if l, err := w.openLocked(ctx, best, s, &w.st.HitAvail, bestN, open); err == nil {
			return l, true
		}
		tried = append(tried, best)
	}
	if !first || cfg.Policy >= PolicyAggressive {
		if l, ok := w.tryIdleList(ctx, &b.safe, s, &w.st.HitSafe, open); ok {
			return l, true
		}
	}
	if !first || cfg.Policy == PolicyAlways {
		if l, ok := w.tryIdleList(ctx, &b.idle, s, &w.st.HitIdle, open); ok {
			return l, true
		}
	}
	return Lease{}, false
}

// tryIdleList takes the most recently used usable connection of l (a safe or
// idle list): LIFO keeps hot connections hot and lets the cold ones age out.
func (w *Worker) tryIdleList(ctx context.Context, l *plist, s *Session, hit *uint64, open bool) (Lease, bool) {
	cfg := &w.pool.cfg
	for p := l.head; p != nil; {
		next := l.next(p)
		if n := p.credit(cfg); n > 0 {
			if lease, err := w.openLocked(ctx, p, s, hit, n, open); err == nil {
				return lease, true
			}
		} else if !p.c.Alive() || p.retired {
			w.place(p)
		}
		p = next
	}
	return Lease{}, false
}

// tryTakeover moves an idle connection for b from another worker to w and
// opens a stream on it. w.mu is held; other workers' locks are only tried,
// so it never waits for another worker.
func (w *Worker) tryTakeover(ctx context.Context, b *bucket, s *Session, first, open bool) (Lease, bool) {
	cfg := &w.pool.cfg
	n := len(w.pool.workers)
	allowSafe := !first || cfg.Policy >= PolicyAggressive
	allowIdle := !first || cfg.Policy == PolicyAlways
	if n < 2 || cfg.TakeoverScan <= 0 || (!allowSafe && !allowIdle) {
		return Lease{}, false
	}
	w.rr++
	for i := 0; i < cfg.TakeoverScan; i++ {
		v := w.pool.workers[(w.id+1+(w.rr+i)%(n-1))%n]
		if !v.mu.TryLock() {
			continue
		}
		p := v.giveLocked(w, b.hash, &b.params, allowSafe, allowIdle)
		v.mu.Unlock()
		if p == nil {
			continue
		}
		p.b = b
		b.conns++
		b.ws.conns++
		b.ws.all.pushFront(p)
		if l, err := w.openLocked(ctx, p, s, &w.st.Takeovers, 0, open); err == nil {
			return l, true
		}
	}
	return Lease{}, false
}

// giveLocked removes a usable idle connection for prm from v and hands its
// ownership to thief. v.mu is held (and thief's).
func (v *Worker) giveLocked(thief *Worker, h uint64, prm *Params, allowSafe, allowIdle bool) *pconn {
	b := v.lookupLocked(h, prm)
	if b == nil {
		return nil
	}
	cfg := &v.pool.cfg
	var p *pconn
	if allowSafe {
		for q := b.safe.head; q != nil && p == nil; q = b.safe.next(q) {
			if q.usable(cfg) {
				p = q
			}
		}
	}
	if allowIdle {
		for q := b.idle.head; q != nil && p == nil; q = b.idle.next(q) {
			if q.usable(cfg) {
				p = q
			}
		}
	}
	if p == nil {
		return nil
	}
	v.unlinkTree(p)
	b.ws.all.remove(p)
	b.ws.conns--
	b.conns--
	p.b = nil
	p.owner.Store(thief)
	return p
}

// openLocked opens a stream on p (open) or reserves one unit of its credit
// for the caller to open (AttachConn), and returns the lease; hit is the
// counter of where p was found, avail the credit seen under w.mu (0: not
// looked). Every lease of p is taken under w.mu, so with avail > 0 the open
// does not wait, and avail > 1 means credit is left after it (credit only
// shrinks by our own leases, or to 0 on death, which the watcher reports).
func (w *Worker) openLocked(ctx context.Context, p *pconn, s *Session, hit *uint64, avail int, open bool) (Lease, error) {
	var st mux.Stream
	if open {
		var err error
		if st, err = p.c.OpenStream(ctx); err != nil {
			w.st.OpenErrors++
			w.place(p)
			return Lease{}, err
		}
	} else if avail == 0 && !p.c.Alive() {
		// Credit not looked at (a takeover or a fresh dial) and the
		// connection died or began to shut down meanwhile.
		err := p.c.Err()
		if err == nil {
			err = mux.ErrGoingAway
		}
		w.st.OpenErrors++
		w.place(p)
		return Lease{}, err
	} else {
		p.credits++
	}
	reused := p.reuses > 0
	p.reuses++
	if p.leases == 0 {
		ws := p.b.ws
		w.unlinkTree(p)
		ws.used++
		if ws.used > ws.maxUsed {
			ws.maxUsed = ws.used
		}
	}
	p.leases++
	if avail > 1 && p.private == nil && p.shareable(w.pool.cfg.MaxReuse) {
		if p.tree != inAvail {
			p.b.avail.pushFront(p)
			p.tree = inAvail
		}
	} else {
		w.placeAlive(p) // it just opened a stream
	}
	*hit++
	w.st.Attaches++
	var rec *leaseRec
	if n := len(w.free); n > 0 {
		rec = w.free[n-1]
		w.free = w.free[:n-1]
	} else {
		rec = &leaseRec{pool: w.pool}
	}
	rec.p, rec.st, rec.sess, rec.reused, rec.credit = p, st, s, reused, !open
	return Lease{rec: rec, gen: rec.gen.Load()}, nil
}

// detachLocked ends one lease of p: err == nil means its request completed;
// credit says it came from AttachConn.
func (w *Worker) detachLocked(p *pconn, err error, credit bool) {
	p.leases--
	if credit {
		p.credits--
	}
	if err == nil {
		p.proven = true
	}
	if p.leases == 0 {
		p.b.ws.used--
	}
	w.place(p)
	p.b.ws.wakeLocked(1) // one stream's credit, or a connection slot, came back
}

// place puts p where its state says it belongs (the detach logic of HAProxy's
// mux, plus re-entry on credit): released if dead and unleased; in avail if
// leased, shared and able to take a stream; in safe or idle if unleased and
// kept, else closed gracefully. Idempotent.
func (w *Worker) place(p *pconn) {
	if p.released {
		return
	}
	if !p.c.Alive() {
		w.unlinkTree(p)
		if p.leases == 0 {
			w.release(p)
		}
		return
	}
	w.placeAlive(p)
}

// placeAlive is place for a connection known to be alive.
func (w *Worker) placeAlive(p *pconn) {
	cfg := &w.pool.cfg
	ws := p.b.ws
	if p.leases > 0 {
		if p.private == nil && p.shareable(cfg.MaxReuse) {
			p.full.Store(true)
			if p.avail(cfg.MaxStreams) > 0 {
				p.full.Store(false)
				if p.tree != inAvail {
					p.b.avail.pushFront(p)
					p.tree = inAvail
				}
				return
			}
		}
		if p.tree == inAvail {
			w.unlinkTree(p)
		}
		return
	}
	if p.full.Load() {
		p.full.Store(false)
	}
	if !p.shareable(cfg.MaxReuse) || w.pool.closed.Load() {
		w.release(p)
		return
	}
	if s := p.private; s != nil {
		if s.closed || s.idleOthers(p) >= cfg.MaxSessionConns {
			w.release(p)
		}
		return
	}
	switch p.tree {
	case inIdle:
		if p.proven {
			p.b.idle.remove(p)
			p.b.safe.pushFront(p)
			p.tree = inSafe
		}
		return
	case inSafe:
		return
	case inAvail:
		w.unlinkTree(p)
	}
	if ws.lru.n >= cfg.MaxIdlePerServer {
		w.release(p) // HAProxy refuses the idle insert and closes gracefully
		return
	}
	if p.proven {
		p.b.safe.pushFront(p)
		p.tree = inSafe
	} else {
		p.b.idle.pushFront(p)
		p.tree = inIdle
	}
	ws.lru.pushFront(p)
	p.idleSince = w.now
}

func (w *Worker) unlinkTree(p *pconn) {
	switch p.tree {
	case inAvail:
		p.b.avail.remove(p)
	case inSafe:
		p.b.safe.remove(p)
		p.b.ws.lru.remove(p)
	case inIdle:
		p.b.idle.remove(p)
		p.b.ws.lru.remove(p)
	}
	p.tree = inNone
}

// release forgets p, which has no lease, and closes it: gracefully when it
// is still open (an eviction), at once when it is dead already.
func (w *Worker) release(p *pconn) {
	w.unlinkTree(p)
	if s := p.private; s != nil {
		s.conns.remove(p)
		p.private = nil
	}
	ws := p.b.ws
	ws.all.remove(p)
	ws.conns--
	p.b.conns--
	p.released = true
	p.c.SetWatcher(nil)
	select {
	case <-p.c.Done():
		w.st.Released++
	default:
		w.st.Evictions++
		w.shutdown(p.c)
	}
}

// shutdown closes c gracefully in the background: the mux finishes its
// streams and sends its close (QUIC CONNECTION_CLOSE with NO_ERROR).
// The pool owns the goroutine: Close ends and joins it.
func (w *Worker) shutdown(c mux.Conn) {
	w.pool.bg.Go(func() {
		ctx, cancel := context.WithTimeout(w.pool.ctx, w.pool.cfg.ShutdownTimeout)
		defer cancel()
		c.Shutdown(ctx)
	})
}

// adoptLocked registers a freshly dialed connection for b; the caller has
// reserved it in b.conns and b.ws.conns.
func (w *Worker) adoptLocked(c mux.Conn, b *bucket) *pconn {
	p := &pconn{c: c, hash: b.hash, b: b}
	p.owner.Store(w)
	b.ws.all.pushFront(p)
	w.st.Dials++
	c.SetWatcher(p)
	return p
}

func (w *Worker) makePrivateLocked(p *pconn, s *Session) {
	if p.private != nil {
		return
	}
	w.unlinkTree(p)
	p.private = s
	s.conns.pushFront(p)
}

func (w *Worker) lookupLocked(h uint64, prm *Params) *bucket {
	for b := w.buckets[h]; b != nil; b = b.next {
		if b.params == *prm {
			return b
		}
	}
	return nil
}

func (w *Worker) bucketLocked(h uint64, prm *Params) *bucket {
	if b := w.lookupLocked(h, prm); b != nil {
		return b
	}
	srv := w.pool.server(prm.Server)
	ws := w.servers[srv]
	if ws == nil {
		ws = &wserver{srv: srv, lru: plist{slot: slotLRU}, all: plist{slot: slotAll}}
		w.servers[srv] = ws
	}
	b := newBucket(prm, h, ws)
	if head := w.buckets[h]; head != nil {
		b.next = head
		w.st.Collisions++
	}
	w.buckets[h] = b
	ws.buckets++
	return b
}

func (w *Worker) inboxPush(p *pconn) {
	for {
		old := w.inbox.Load()
		p.inNext = old
		if w.inbox.CompareAndSwap(old, p) {
			return
		}
	}
}

// drainInboxLocked applies the watcher events queued for w. A connection
// taken over since its event was queued is forwarded to its new owner.
func (w *Worker) drainInboxLocked() {
	if w.inbox.Load() == nil {
		return
	}
	for p := w.inbox.Swap(nil); p != nil; {
		next := p.inNext
		if o := p.owner.Load(); o != w {
			o.inboxPush(p)
			p = next
			continue
		}
		ev := p.pending.Swap(0)
		if !p.released && p.b != nil {
			was := p.tree
			w.place(p)
			if ev&evCredit != 0 && was != inAvail && p.tree == inAvail && p.leases > 0 {
				w.st.Reinsertions++
			}
			// Credit returned, or a dead connection freed a slot.
			p.b.ws.wakeLocked(max(1, p.credit(&w.pool.cfg)))
		}
		p = next
	}
}

// Stats returns the worker's statistics.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drainInboxLocked()
	s := w.st
	for _, ws := range w.servers {
		s.Conns += ws.conns
		for p := ws.all.head; p != nil; p = ws.all.next(p) {
			s.Leases += p.leases
			if p.private != nil {
				s.Private++
			}
		}
	}
	for _, head := range w.buckets {
		for b := head; b != nil; b = b.next {
			s.Avail += b.avail.n
			s.Safe += b.safe.n
			s.Idle += b.idle.n
		}
	}
	return s
}
