package bufring

import (
	"context"
	"fmt"
)

// Reservations: memory the one budget bounds but that the pool does not
// allocate. netstack allocates a TCP connection's receive and send
// buffers itself, as data comes and goes; the engine reserves what they
// may reach (their caps) in the same bounded pool as its payload buffers,
// so that one Limit bounds both, and gives it back when the connection
// closes or shrinks its buffers.
//
// Reserve calls that must sleep queue in their own FIFO, served before the
// sleeping Acquire calls when a release leaves room: a new connection
// waits only for the room its reservation needs, not behind every
// transfer under way. The buffers cannot starve for it: ReserveLimit
// keeps their share of the Limit out of the reservations' reach. Both
// queues are woken by the same releases.

// Reserve counts n bytes against the pool's Limit. When they do not fit
// (free pooled buffers are evicted first to make room), it sleeps in the
// reservations' FIFO queue until releases leave room, or until ctx is
// done (ctx.Err()) or the pool is closed ([ErrClosed]). Room handed over
// just as ctx ends is given back, never lost. Without a Limit it never
// sleeps. The caller gives the n bytes back with Unreserve, once.
func (p *BytePool) Reserve(ctx context.Context, n int64) error {
	if n < 0 {
		return fmt.Errorf("%w: reservation of %d bytes", ErrConfig, n)
	}
	sh := &p.shared
	// FIFO among reservations; a sleeping Acquire comes after them anyway.
	if sh.rwait.Load() == 0 && p.claim(p.gen.Load(), n) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		sh.reserveFails.Add(1)
		return err
	}
	w := &waiter{class: ClassApp, ch: make(chan uint64, 1), size: int(n)}
	q := &sh.wq
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		sh.reserveFails.Add(1)
		return ErrClosed
	}
	sh.rq.push(w)
	sh.rwait.Add(1)
	q.mu.Unlock()
	sh.reserveWaits.Add(1)

	// A release may have happened before the push: see settle.
	p.settle()

	select {
	case _, ok := <-w.ch:
		if !ok {
			sh.reserveFails.Add(1)
			return ErrClosed
		}
		return nil // counted by settleReserves
	case <-ctx.Done():
	}
	sh.reserveFails.Add(1)
	q.mu.Lock()
	if w.queued {
		sh.rq.remove(w)
		sh.rwait.Add(-1)
		q.mu.Unlock()
		return ctx.Err()
	}
	q.mu.Unlock()
	// Given the room (or closed) at the moment ctx ended: give it back.
	if _, ok := <-w.ch; ok {
		p.Unreserve(n)
	}
	return ctx.Err()
}

// TryReserve is Reserve without sleeping: it reports whether the n bytes
// were reserved, at once, without overtaking a sleeping Reserve.
func (p *BytePool) TryReserve(n int64) bool {
	return n >= 0 && p.shared.rwait.Load() == 0 && p.claim(p.gen.Load(), n)
}

// Unreserve gives back n bytes of a Reserve or TryReserve, from any
// goroutine; sleepers get the room.
func (p *BytePool) Unreserve(n int64) {
	p.shared.reserved.Add(-n)
	p.shrink(n)
}

// claim reserves n bytes if they fit under ReserveLimit and, evicting
// free buffers if need be, under Limit.
func (p *BytePool) claim(g *byteGen, n int64) bool {
	sh := &p.shared
	for lim := p.cfg.ReserveLimit; lim > 0; {
		v := sh.reserved.Load()
		if v+n > lim {
			return false
		}
		if sh.reserved.CompareAndSwap(v, v+n) {
			break
		}
	}
	if p.cfg.ReserveLimit <= 0 {
		sh.reserved.Add(n)
	}
	if !p.room(g, n) {
		sh.reserved.Add(-n)
		return false
	}
	sh.reserves.Add(1)
	return true
}

// settleReserves serves sleeping Reserve calls, oldest first, for as long
// as there is room. wq.mu must be held.
func (p *BytePool) settleReserves(g *byteGen) {
	sh := &p.shared
	for {
		w := sh.rq.first(ClassApp)
		if w == nil || !p.claim(g, int64(w.size)) {
			return
		}
		sh.rq.remove(w)
		sh.rwait.Add(-1)
		w.ch <- 0 // never blocks: capacity 1, one delivery per waiter
	}
}
