package bufring

import (
	"fmt"
	"sync/atomic"
)

// cacheLine is the padding unit that keeps independently written counters on
// separate cache lines. 64 bytes is the line size of every amd64 and arm64
// core xdpnet targets.
const cacheLine = 64

// RingOf is a bounded multi-producer multi-consumer FIFO of T.
//
// Every slot carries a sequence number: a producer may fill slot i only when
// its sequence equals the position it claimed, and a consumer may empty it
// only when the sequence equals that position plus one. Positions are 64-bit
// and never wrap in practice, so a slot recycled by a later lap can never be
// mistaken for the earlier one (no ABA). Positions are claimed with one
// compare-and-swap per batch, so batch operations cost one contended atomic
// however many elements they move.
//
// The ring never blocks and takes no lock. Its one weakness is shared by
// every sequence-numbered ring: a producer descheduled between claiming a
// position and publishing it hides the elements behind it from consumers
// until it runs again, so Pop may report empty while Len is positive; a
// consumer stalled likewise makes Push report full early. Both are
// transient.
//
// The zero value is not usable; create rings with [NewRingOf] or [NewRing].
type RingOf[T any] struct {
	// Read-only after construction.
	mask  uint64
	slots []slot[T]
	_     [cacheLine - 8 - 24]byte

	// enq is the next position producers claim.
	enq atomic.Uint64
	_   [cacheLine - 8]byte

	// deq is the next position consumers claim.
	deq atomic.Uint64
	_   [cacheLine - 8]byte
}

type slot[T any] struct {
	seq atomic.Uint64
	val T
}

// Ring is the ring of UMEM frame addresses.
type Ring = RingOf[uint64]

// NewRing returns an empty ring of frame addresses. capacity must be a power
// of two.
func NewRing(capacity int) (*Ring, error) { return NewRingOf[uint64](capacity) }

// NewRingOf returns an empty ring holding up to capacity elements; capacity
// must be a power of two between 1 and 1<<40.
func NewRingOf[T any](capacity int) (*RingOf[T], error) {
	if capacity < 1 || capacity > 1<<40 || capacity&(capacity-1) != 0 {
		return nil, fmt.Errorf("bufring: ring capacity %d: %w", capacity, ErrNotPowerOfTwo)
	}
	r := &RingOf[T]{mask: uint64(capacity - 1), slots: make([]slot[T], capacity)}
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
	}
	return r, nil
}

// Cap returns the capacity of r.
func (r *RingOf[T]) Cap() int { return len(r.slots) }

// Len returns the number of elements in r. Under concurrent use the figure is
// a snapshot that may already be stale.
func (r *RingOf[T]) Len() int {
	// Load deq first: it never passes enq, so a later enq load can only make
	// the difference larger, never negative.
	d := r.deq.Load()
	e := r.enq.Load()
	n := int64(e - d)
	switch {
	case n < 0:
		return 0
	case n > int64(len(r.slots)):
		return len(r.slots)
	}
	return int(n)
}

// Push appends v and reports whether there was room.
func (r *RingOf[T]) Push(v T) bool {
	pos := r.enq.Load()
	for {
		s := &r.slots[pos&r.mask]
		seq := s.seq.Load()
		switch d := int64(seq - pos); {
		case d == 0:
			if r.enq.CompareAndSwap(pos, pos+1) {
				s.val = v
				s.seq.Store(pos + 1)
				return true
			}
			pos = r.enq.Load()
		case d < 0:
			return false // the slot still holds the previous lap: full
		default:
			pos = r.enq.Load() // another producer got there first
		}
	}
}

// PushBatch appends a prefix of vs and returns its length: as many elements as
// there are free slots, up to len(vs). It returns 0 only when r is full.
func (r *RingOf[T]) PushBatch(vs []T) int {
	if len(vs) == 0 {
		return 0
	}
	pos := r.enq.Load()
	for {
		n := 0
		for n < len(vs) && r.slots[(pos+uint64(n))&r.mask].seq.Load() == pos+uint64(n) {
			n++
		}
		if n == 0 {
			if int64(r.slots[pos&r.mask].seq.Load()-pos) < 0 {
				return 0
			}
			pos = r.enq.Load()
			continue
		}
		// The n slots were free for this lap; nobody else can fill them
		// before enq passes them, so winning the CAS makes them ours.
		if !r.enq.CompareAndSwap(pos, pos+uint64(n)) {
			pos = r.enq.Load()
			continue
		}
		for i := range n {
			s := &r.slots[(pos+uint64(i))&r.mask]
			s.val = vs[i]
			s.seq.Store(pos + uint64(i) + 1)
		}
		return n
	}
}

// Pop removes and returns the oldest element, or reports false when r is
// empty.
func (r *RingOf[T]) Pop() (T, bool) {
	pos := r.deq.Load()
	for {
		s := &r.slots[pos&r.mask]
		seq := s.seq.Load()
		switch d := int64(seq - (pos + 1)); {
		case d == 0:
			if r.deq.CompareAndSwap(pos, pos+1) {
				v := s.val
				var zero T
				s.val = zero // do not keep garbage reachable
				s.seq.Store(pos + r.mask + 1)
				return v, true
			}
			pos = r.deq.Load()
		case d < 0:
			var zero T
			return zero, false
		default:
			pos = r.deq.Load()
		}
	}
}

// PopBatch removes up to len(dst) of the oldest elements into dst and returns
// how many it moved. It returns 0 only when r is empty.
func (r *RingOf[T]) PopBatch(dst []T) int {
	if len(dst) == 0 {
		return 0
	}
	pos := r.deq.Load()
	for {
		n := 0
		for n < len(dst) && r.slots[(pos+uint64(n))&r.mask].seq.Load() == pos+uint64(n)+1 {
			n++
		}
		if n == 0 {
			if int64(r.slots[pos&r.mask].seq.Load()-(pos+1)) < 0 {
				return 0
			}
			pos = r.deq.Load()
			continue
		}
		if !r.deq.CompareAndSwap(pos, pos+uint64(n)) {
			pos = r.deq.Load()
			continue
		}
		var zero T
		for i := range n {
			s := &r.slots[(pos+uint64(i))&r.mask]
			dst[i] = s.val
			s.val = zero
			s.seq.Store(pos + uint64(i) + r.mask + 1)
		}
		return n
	}
}

// each calls fn on every element in r, oldest first. It is only correct when
// no other goroutine uses r (CheckConservation).
func (r *RingOf[T]) each(fn func(T)) {
	for pos := r.deq.Load(); pos != r.enq.Load(); pos++ {
		fn(r.slots[pos&r.mask].val)
	}
}
