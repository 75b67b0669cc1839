package nic

// AF_XDP rings are single-producer single-consumer queues of a power-of-two
// size shared with the kernel. Producer and consumer are free-running uint32
// counters; the slot of counter c is c & mask. Unsigned subtraction keeps the
// arithmetic right across the 2^32 wrap, so the helpers below never compare
// counters directly.

// ringFree returns how many slots a producer at prod may still fill when the
// consumer is at cons, in a ring of size slots.
func ringFree(prod, cons, size uint32) uint32 { return size - (prod - cons) }

// ringAvail returns how many entries a consumer at cons may take when the
// producer is at prod.
func ringAvail(prod, cons uint32) uint32 { return prod - cons }

// ring holds the index state one side of an SPSC ring keeps: the pointers to
// the shared producer, consumer and flags words, and cached copies of the
// other side's counter so the shared cache line is read only when the cached
// value says the ring looks full (producer side) or empty (consumer side).
//
// The methods that touch the shared words live in ring_unsafe.go; everything
// here is plain arithmetic on the cached values.
type ring struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32

	// Our own counter (the producer for fill/TX, the consumer for RX and
	// completion) and the last value of the kernel's counter we loaded.
	local  uint32
	cached uint32
}

// prodReserve returns how many of want slots the producer may fill now,
// reloading the consumer counter only when the cached one is not enough.
func (r *ring) prodReserve(want uint32) uint32 {
	free := ringFree(r.local, r.cached, r.size)
	if free < want {
		r.cached = r.loadConsumer()
		free = ringFree(r.local, r.cached, r.size)
	}
	return min(free, want)
}

// consPeek returns how many of want entries the consumer may take now,
// reloading the producer counter only when the cached one shows too few.
func (r *ring) consPeek(want uint32) uint32 {
	avail := ringAvail(r.cached, r.local)
	if avail < want {
		r.cached = r.loadProducer()
		avail = ringAvail(r.cached, r.local)
	}
	return min(avail, want)
}

// prodOutstanding returns how many produced entries the kernel has not yet
// consumed, as of a fresh load of its consumer counter.
func (r *ring) prodOutstanding() uint32 {
	r.cached = r.loadConsumer()
	return r.local - r.cached
}

// needWakeup reports whether the kernel set XDP_RING_NEED_WAKEUP on the ring.
func (r *ring) needWakeup() bool { return r.loadFlags()&ringNeedWakeup != 0 }

// ringNeedWakeup is XDP_RING_NEED_WAKEUP from <linux/if_xdp.h>.
const ringNeedWakeup = 1
