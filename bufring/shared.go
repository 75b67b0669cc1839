package bufring

import (
	"context"
	"sync/atomic"
	"time"
)

// byteShared is the state of a BytePool's shared path ([BytePool.Acquire],
// [BytePool.Release]) and of its bound.
type byteShared struct {
	live  atomic.Int64 // bytes allocated and not yet left to the GC, and reserved (kept only with a Limit)
	nwait atomic.Int64 // Acquire calls asleep in wq
	wq    waitQueue    // ClassApp only
	// rq holds the Reserve calls asleep (ClassApp only), guarded by
	// wq.mu, not its own; rwait counts them. They are served after every
	// Acquire in wq (reserve.go).
	rq       waitQueue
	rwait    atomic.Int64
	reserved atomic.Int64 // bytes reserved now (kept with or without a Limit)

	reserves, reserveWaits, reserveFails atomic.Uint64

	gets, puts           atomic.Uint64 // Acquire successes, Release calls
	allocs, evicted      atomic.Uint64
	waits, waitFails     atomic.Uint64
	handoffs, passedOn   atomic.Uint64
	discarded, tooLarge  atomic.Uint64
	waitNanos, maxWaitNs atomic.Int64
}

// grow counts size bytes newly allocated by a cache (Get never waits).
func (p *BytePool) grow(size int) {
	if p.cfg.Limit > 0 {
		p.shared.live.Add(int64(size))
	}
}

// shrink counts n bytes left to the garbage collector and wakes waiters,
// for whom that may be room.
func (p *BytePool) shrink(n int64) {
	if p.cfg.Limit <= 0 {
		return
	}
	p.shared.live.Add(-n)
	if p.shared.sleepers() {
		p.settle()
	}
}

// sleepers reports whether an Acquire or a Reserve sleeps: a release may
// be room for it.
func (sh *byteShared) sleepers() bool { return sh.nwait.Load() != 0 || sh.rwait.Load() != 0 }

// reserve counts size more bytes if that stays within the Limit.
func (p *BytePool) reserve(size int64) bool {
	if p.cfg.Limit <= 0 {
		return true
	}
	for {
		v := p.shared.live.Load()
		if v+size > p.cfg.Limit {
			return false
		}
		if p.shared.live.CompareAndSwap(v, v+size) {
			return true
		}
	}
}

// take returns a buffer of class i without sleeping: from the shared ring,
// else a new one if room allows.
func (p *BytePool) take(g *byteGen, i int) ([]byte, bool) {
	if b, ok := g.rings[i].Pop(); ok {
		return b, true
	}
	if !p.room(g, int64(g.sizes[i])) {
		return nil, false
	}
	p.shared.allocs.Add(1)
	return make([]byte, g.sizes[i]), true
}

// room counts size more bytes if that stays within the Limit, evicting
// free buffers from the shared rings to make room if need be; it reports
// false when even that does not leave size bytes.
func (p *BytePool) room(g *byteGen, size int64) bool {
	for !p.reserve(size) {
		evicted := false
		for _, r := range g.rings {
			if b, ok := r.Pop(); ok {
				p.shared.live.Add(-int64(cap(b)))
				p.shared.evicted.Add(1)
				evicted = true
				break
			}
		}
		if !evicted {
			return false
		}
	}
	return true
}

// Acquire returns a buffer of length n from the smallest class holding n;
// unlike [ByteCache.Get] it may be called from any goroutine (it uses only
// the lock-free shared rings) and it respects the pool's Limit: when the
// Limit is reached and no free buffer fits, it sleeps in a FIFO queue until
// a Release hands it one, or until ctx is done (ctx.Err()) or the pool is
// closed ([ErrClosed]). A buffer handed over just as ctx ends is passed on
// to the next waiter or the ring, never lost. A length above the largest
// class is refused with [ErrTooLarge].
//
// Ownership: the caller owns the buffer until it passes it to Release
// exactly once (from any goroutine); it must not reslice it from a non-zero
// start. A caller that holds a buffer must not Acquire another of the same
// bounded pool while holding it unless something else guarantees a release:
// two holders each waiting for the other's buffer would deadlock.
func (p *BytePool) Acquire(ctx context.Context, n int) ([]byte, error) {
	g := p.gen.Load()
	i := g.class(n)
	if i < 0 || n < 0 {
		p.shared.tooLarge.Add(1)
		return nil, ErrTooLarge
	}
	if b, ok := p.tryAcquire(g, i, n); ok {
		return b, nil
	}
	if err := ctx.Err(); err != nil {
		p.shared.waitFails.Add(1)
		return nil, err
	}
	w := &waiter{class: ClassApp, ch: make(chan uint64, 1), size: n}
	q := &p.shared.wq
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		p.shared.waitFails.Add(1)
		return nil, ErrClosed
	}
	q.push(w)
	p.shared.nwait.Add(1)
	q.mu.Unlock()
	p.shared.waits.Add(1)
	start := time.Now()

	// A release may have happened between take and push: see settle.
	p.settle()

	select {
	case _, ok := <-w.ch:
		if !ok {
			p.shared.waitFails.Add(1)
			return nil, ErrClosed
		}
		p.observeByteWait(time.Since(start))
		p.shared.gets.Add(1)
		return w.buf[:n], nil
	case <-ctx.Done():
	}
	p.shared.waitFails.Add(1)
	q.mu.Lock()
	if w.queued {
		q.remove(w)
		p.shared.nwait.Add(-1)
		q.mu.Unlock()
		return nil, ctx.Err()
	}
	q.mu.Unlock()
	// Handed a buffer (or closed) at the moment ctx ended: pass it on.
	if _, ok := <-w.ch; ok {
		p.shared.passedOn.Add(1)
		p.shared.gets.Add(1) // balanced by the Release
		p.Release(w.buf)
	}
	return nil, ctx.Err()
}

// TryAcquire is Acquire without the wait: a buffer of length n when one is
// at hand and nobody waits for one, else false (counted nowhere: the caller
// goes on to Acquire, which counts). It lets a caller skip making the
// deadline of its wait when no wait is needed.
func (p *BytePool) TryAcquire(n int) ([]byte, bool) {
	g := p.gen.Load()
	i := g.class(n)
	if i < 0 || n < 0 {
		return nil, false
	}
	return p.tryAcquire(g, i, n)
}

func (p *BytePool) tryAcquire(g *byteGen, i, n int) ([]byte, bool) {
	if p.shared.sleepers() { // FIFO: do not overtake sleepers
		return nil, false
	}
	b, ok := p.take(g, i)
	if !ok {
		return nil, false
	}
	p.shared.gets.Add(1)
	if debug {
		p.dbg.take(b)
	}
	return b[:n], true
}

func (p *BytePool) observeByteWait(d time.Duration) {
	p.shared.waitNanos.Add(int64(d))
	for {
		m := p.shared.maxWaitNs.Load()
		if int64(d) <= m || p.shared.maxWaitNs.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Release gives back a buffer returned by Acquire (or by a ByteCache's
// Get); it may be called from any goroutine. The oldest sleeping Acquire
// gets it, or the room it leaves; otherwise it goes to its class's shared
// ring, or to the garbage collector when that is full.
func (p *BytePool) Release(b []byte) {
	p.shared.puts.Add(1)
	g := p.gen.Load()
	i := g.exact(cap(b))
	if i < 0 {
		if debug && cap(b) > 0 {
			p.dbg.forget(b)
		}
		return // not of this pool's classes: never counted in live
	}
	if debug {
		p.dbg.give(b)
	}
	if !g.rings[i].Push(b[:cap(b)]) {
		p.shared.discarded.Add(1)
		p.shrink(int64(cap(b))) // settles
		return
	}
	// Published in the ring before looking for sleepers, as Acquire queues
	// before looking at the rings: one of the two sees the other.
	if p.shared.sleepers() {
		p.settle()
	}
}

// settle serves sleeping Reserve calls, oldest first, for as long as there
// is room (reserve.go), then sleeping Acquire calls, oldest first, for as
// long as take finds them a buffer.
func (p *BytePool) settle() {
	q := &p.shared.wq
	q.mu.Lock()
	defer q.mu.Unlock()
	g := p.gen.Load()
	p.settleReserves(g)
	for {
		w := q.first(ClassApp)
		if w == nil {
			return
		}
		var b []byte
		if i := g.class(w.size); i >= 0 {
			var ok bool
			if b, ok = p.take(g, i); !ok {
				return
			}
		} else {
			// A Resize (unbounded pools only) left no class for it.
			b = make([]byte, w.size)
		}
		q.remove(w)
		p.shared.nwait.Add(-1)
		p.shared.handoffs.Add(1)
		if debug {
			p.dbg.take(b)
		}
		w.buf = b
		w.ch <- 0 // never blocks: capacity 1, one delivery per waiter
	}
}

// Close wakes every sleeping Acquire and Reserve with ErrClosed and makes
// later ones that would sleep fail with it. Buffers out stay valid and may
// be released, reservations may be given back.
func (p *BytePool) Close() {
	q := &p.shared.wq
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for {
		w := q.first(ClassApp)
		if w == nil {
			break
		}
		q.remove(w)
		p.shared.nwait.Add(-1)
		close(w.ch)
	}
	for {
		w := p.shared.rq.first(ClassApp)
		if w == nil {
			return
		}
		p.shared.rq.remove(w)
		p.shared.rwait.Add(-1)
		close(w.ch)
	}
}
