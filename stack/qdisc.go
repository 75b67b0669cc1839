package stack

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/qdisc"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

const (
	// ownerBudget and ownerBatches bound what a sender transmits as a
	// queue's owner (its own packet and those queued meanwhile by others)
	// before it hands the rest to a goroutine, so that no sender pays
	// unboundedly for others' traffic: ownerBudget bytes (a few GSO
	// segments, or ~170 MTU packets) or ownerBatches link writes, each of
	// which may wait up to EndpointOptions.TXWait for a full ring.
	ownerBudget  = 256 << 10
	ownerBatches = 4
	// qdiscBatch bounds the packets of one WritePackets call (one kick).
	qdiscBatch = 64
)

// bypassQdisc is a queueing discipline that sends in the caller's goroutine,
// as Linux's qdiscs do with TCQ_F_CAN_BYPASS and the __QDISC_STATE_RUNNING
// bit: the sender that finds its queue idle becomes the queue's owner and
// writes to the link itself, then keeps writing, in batches (one
// WritePackets call, so one TX kick per batch), what other senders queued
// meanwhile; those only append and return. gVisor's fifo qdisc instead
// wakes a goroutine for every batch, a hop that costs a scheduler wake-up
// per packet when the load is light.
//
// An owner that has written ownerBudget bytes or ownerBatches batches while
// more keep coming hands the queue to a new goroutine, which drains it
// until it is empty. Ownership is given up under the queue's lock after
// finding the queue empty, so a packet queued at any time either finds an
// owner that will take it or becomes the owner: none is stranded.
//
// Each queue holds at most limit packets besides the batch being written;
// beyond that packets are dropped, counted, and ErrNoBufferSpace returned
// (netstack counts it in the NIC's TxPacketsDroppedNoBufferSpace, and TCP
// recovers by retransmission).
//
// Buffer ownership: a queued packet holds a reference taken by WritePacket
// and released after the link wrote it (or on Close); the link keeps no
// reference (see Endpoint.WritePackets).
type bypassQdisc struct {
	lower  gstack.LinkWriter
	pick   func(*gstack.PacketBuffer) int
	queues []bypassQueue

	// owners counts the queues' current owners, for Close to wait for.
	owners sync.WaitGroup
	drops  atomic.Uint64
}

var _ gstack.QueueingDiscipline = (*bypassQdisc)(nil)

type bypassQueue struct {
	mu sync.Mutex
	// +checklocks:mu
	pending qdisc.PacketBufferCircularList
	// +checklocks:mu
	running bool // an owner is draining the queue
	// +checklocks:mu
	closed bool

	// batch is the owner's: the packets it is writing.
	batch gstack.PacketBufferList
}

// NewBypassQdisc returns a queueing discipline for ep that transmits in the
// sender's goroutine when its queue is idle and batches what other senders
// queue while it is busy (see bypassQdisc), with one queue of 1000 packets
// per endpoint queue, chosen by flow hash as the endpoint does. Use it with
// NewEndpoint and Stack.AddNIC(ep, NICOptions{QDisc: NewBypassQdisc(ep)}).
// Its Drops() uint64 method counts the packets refused because their queue
// was full. AddXDPNIC does not use it by default: see bench/stack-tx.md.
func NewBypassQdisc(ep *Endpoint) gstack.QueueingDiscipline {
	return newBypassQdisc(ep, ep.Queues(), txQueueLen, ep.pick)
}

// newBypassQdisc returns a discipline with n queues of limit packets in
// front of lower; pick maps a packet to its queue (in [0, n)).
func newBypassQdisc(lower gstack.LinkWriter, n, limit int, pick func(*gstack.PacketBuffer) int) *bypassQdisc {
	d := &bypassQdisc{lower: lower, pick: pick, queues: make([]bypassQueue, n)}
	if n == 1 {
		d.pick = func(*gstack.PacketBuffer) int { return 0 }
	}
	for i := range d.queues {
		d.queues[i].pending.Init(limit)
	}
	return d
}

// WritePacket implements stack.QueueingDiscipline. It returns nil once pkt
// is queued or written; errors of the link are counted by the link.
func (d *bypassQdisc) WritePacket(pkt *gstack.PacketBuffer) tcpip.Error {
	q := &d.queues[d.pick(pkt)]
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return &tcpip.ErrClosedForSend{}
	case !q.pending.HasSpace():
		q.mu.Unlock()
		d.drops.Add(1)
		return &tcpip.ErrNoBufferSpace{}
	}
	q.pending.PushBack(pkt.IncRef())
	if q.running {
		q.mu.Unlock()
		return nil
	}
	q.running = true
	d.owners.Add(1)
	if !d.drain(q, true) {
		// Budget spent and more queued: a goroutine takes over the
		// ownership (and the owners count) from here.
		go d.drain(q, false)
	}
	return nil
}

// drain writes the queue's packets in batches until it is empty or, if
// bounded, until it has written ownerBudget bytes or ownerBatches batches.
// The queue's owner calls it, with q.mu held if bounded. It reports whether
// it gave up the ownership (the queue was empty); if not, it returns with
// q.mu released and the ownership kept for the caller to pass on.
func (d *bypassQdisc) drain(q *bypassQueue, bounded bool) bool {
	if !bounded {
		q.mu.Lock()
	}
	bytes := 0
	for batches := 0; ; batches++ {
		if q.pending.IsEmpty() {
			q.running = false
			q.mu.Unlock()
			d.owners.Done()
			return true
		}
		if bounded && (batches == ownerBatches || bytes >= ownerBudget) {
			q.mu.Unlock()
			return false
		}
		for q.batch.Len() < qdiscBatch && !q.pending.IsEmpty() {
			pkt := q.pending.RemoveFront()
			bytes += pkt.Size()
			q.batch.PushBack(pkt)
		}
		q.mu.Unlock()
		_, _ = d.lower.WritePackets(q.batch)
		q.batch.Reset()
		q.mu.Lock()
	}
}

// Close implements stack.QueueingDiscipline: later writes fail with
// ErrClosedForSend; packets already queued are written by their owners,
// which Close waits for, so every reference is released when it returns.
func (d *bypassQdisc) Close() {
	for i := range d.queues {
		q := &d.queues[i]
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
	}
	d.owners.Wait()
}

// Drops returns how many packets found their queue full.
func (d *bypassQdisc) Drops() uint64 { return d.drops.Load() }
