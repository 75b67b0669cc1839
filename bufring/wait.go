package bufring

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Class is the priority class of a waiter. Lower values are more critical:
// when a frame is released, the oldest waiter of the most critical non-empty
// class gets it.
type Class uint8

const (
	// ClassRX is the RX fill path. Its waiters may take the RX reserve and
	// are served before the reserve is refilled.
	ClassRX Class = iota
	// ClassTX is packet transmission by the stack.
	ClassTX
	// ClassApp is everything else (application data, checks, pre-allocation).
	ClassApp

	numClasses
)

func (c Class) String() string {
	switch c {
	case ClassRX:
		return "rx"
	case ClassTX:
		return "tx"
	case ClassApp:
		return "app"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// waiter is one goroutine blocked in Wait. ch (capacity 1) receives the frame
// handed to it, or is closed when the pool closes; both happen under the
// queue mutex, after the waiter left the queue, so each waiter gets at most
// one frame.
type waiter struct {
	class      Class
	ch         chan uint64
	prev, next *waiter
	queued     bool // guarded by waitQueue.mu
	// size and buf serve BytePool waiters: the length wanted, and the
	// buffer handed over, written under the queue mutex before the send
	// on ch.
	size int
	buf  []byte
}

// waitQueue holds FIFO lists of waiters, one per class.
//
// It is guarded by a mutex rather than being lock-free: it is touched only
// when a pool is exhausted (a goroutine is about to sleep anyway) or while
// someone sleeps (FramePool.nwait != 0), never on the Get/Put fast path, and
// the mutex makes "check that the waiter still waits, then hand it the
// frame" a single atomic step, which is what makes cancellation safe.
type waitQueue struct {
	mu     sync.Mutex
	head   [numClasses]*waiter
	tail   [numClasses]*waiter
	closed bool
}

// push appends w to its class. q.mu must be held.
func (q *waitQueue) push(w *waiter) {
	w.queued = true
	w.prev = q.tail[w.class]
	if w.prev != nil {
		w.prev.next = w
	} else {
		q.head[w.class] = w
	}
	q.tail[w.class] = w
}

// remove unlinks w. q.mu must be held and w queued.
func (q *waitQueue) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head[w.class] = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail[w.class] = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
}

// first returns the oldest waiter of the most critical class at most
// maxClass, or nil. q.mu must be held.
func (q *waitQueue) first(maxClass Class) *waiter {
	for c := Class(0); c <= maxClass && c < numClasses; c++ {
		if q.head[c] != nil {
			return q.head[c]
		}
	}
	return nil
}

// deliver hands addr to w, which leaves the queue. q.mu must be held.
func (p *FramePool) deliver(w *waiter, addr uint64) {
	p.wq.remove(w)
	p.nwait.Add(-1)
	p.handoffs.Add(1)
	w.ch <- addr // never blocks: capacity 1, one delivery per waiter
}

// handoff gives frames from vs to waiters (only ClassRX ones if rxOnly) and
// returns the frames nobody waited for.
func (p *FramePool) handoff(vs []uint64, rxOnly bool) []uint64 {
	maxClass := numClasses - 1
	if rxOnly {
		maxClass = ClassRX
	}
	p.wq.mu.Lock()
	for len(vs) > 0 {
		w := p.wq.first(maxClass)
		if w == nil {
			break
		}
		p.deliver(w, vs[0])
		vs = vs[1:]
	}
	p.wq.mu.Unlock()
	return vs
}

// settle serves waiters from the shared rings. Releasers call it after
// pushing and new waiters after queueing; since both first publish (push,
// nwait increment) and then look at the other side (nwait, the rings), at
// least one of them sees the other and no frame sits in a ring while a
// waiter sleeps for it.
func (p *FramePool) settle() {
	p.wq.mu.Lock()
	defer p.wq.mu.Unlock()
	for {
		w := p.wq.first(numClasses - 1)
		if w == nil {
			return
		}
		addr, ok := p.main.Pop()
		if !ok && w.class == ClassRX {
			if addr, ok = p.rsv.Pop(); ok {
				p.deficit.Add(1)
				p.rsvTaken.Add(1)
			}
		}
		if !ok {
			// Nothing for the head waiter. A less critical waiter cannot
			// use the reserve either, so nobody else can be served now.
			return
		}
		p.deliver(w, addr)
	}
}

// close wakes every waiter with ErrClosed and rejects later ones.
func (q *waitQueue) close(p *FramePool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for {
		w := q.first(numClasses - 1)
		if w == nil {
			return
		}
		q.remove(w)
		p.nwait.Add(-1)
		close(w.ch)
	}
}

// Wait returns a free frame, sleeping until one is released if the pool is
// exhausted (a frame that is available is returned even if ctx is done). Waiters are served oldest first within a class and more
// critical classes first; a released frame is handed directly to the waiter.
// Only ClassRX waiters may take the RX reserve. Wait gives up when ctx is
// done (returning ctx.Err()) or the pool is closed (ErrClosed); a frame that
// was handed over at the same moment is passed on to the next waiter or the
// shared ring, never lost. A waiter may be woken by a release on any worker.
//
// Ownership of the returned frame is as for Get.
func (c *Cache) Wait(ctx context.Context, class Class) (uint64, error) {
	if class >= numClasses {
		return 0, fmt.Errorf("%w: wait class %d", ErrConfig, class)
	}
	if class == ClassRX {
		if c.GetRX(c.one[:]) == 1 {
			return c.one[0], nil
		}
	} else if addr, ok := c.Get(); ok {
		return addr, nil
	}
	addr, err := c.p.wait(ctx, class)
	if err != nil {
		return 0, err
	}
	inc(&c.fromShared, 1)
	inc(&c.gets, 1)
	if debug {
		c.p.dbg.take(addr)
	}
	return addr, nil
}

func (p *FramePool) wait(ctx context.Context, class Class) (uint64, error) {
	if err := ctx.Err(); err != nil {
		p.waitFails.Add(1)
		return 0, err
	}
	w := &waiter{class: class, ch: make(chan uint64, 1)}
	p.wq.mu.Lock()
	if p.wq.closed {
		p.wq.mu.Unlock()
		p.waitFails.Add(1)
		return 0, ErrClosed
	}
	p.wq.push(w)
	p.nwait.Add(1)
	p.wq.mu.Unlock()
	p.waits.Add(1)
	start := time.Now()

	p.settle()

	select {
	case addr, ok := <-w.ch:
		if !ok {
			p.waitFails.Add(1)
			return 0, ErrClosed
		}
		p.observeWait(time.Since(start))
		return addr, nil
	case <-ctx.Done():
	}
	if p.waitCancelledHook != nil {
		p.waitCancelledHook()
	}
	p.waitFails.Add(1)
	p.wq.mu.Lock()
	if w.queued {
		p.wq.remove(w)
		p.nwait.Add(-1)
		p.wq.mu.Unlock()
		return 0, ctx.Err()
	}
	p.wq.mu.Unlock()
	// A frame was handed to w (or the pool closed) while the context ended.
	// w no longer wants it: pass it on.
	if addr, ok := <-w.ch; ok {
		p.passedOn.Add(1)
		var one [1]uint64
		one[0] = addr
		p.release(one[:])
	}
	return 0, ctx.Err()
}
