package stack

import (
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// qdiscLower is a fake link below a bypassQdisc: it checks that one queue is
// never written by two goroutines at once, that each sender's packets
// arrive in order, and counts what it got.
type qdiscLower struct {
	t      *testing.T
	queues int
	// hook, if set, runs at the start of every WritePackets call (n counts
	// calls from 1).
	hook func(n int64)
	// fail makes every other call report ErrNoBufferSpace, as the
	// endpoint does when it dropped part of a batch.
	fail bool

	calls   atomic.Int64
	packets atomic.Int64
	busy    []atomic.Bool

	mu sync.Mutex
	// +checklocks:mu
	next map[uint32]uint32 // sender -> next sequence number expected
}

func newQdiscLower(t *testing.T, queues int) *qdiscLower {
	return &qdiscLower{t: t, queues: queues, busy: make([]atomic.Bool, queues), next: map[uint32]uint32{}}
}

func (l *qdiscLower) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	n := l.calls.Add(1)
	if l.hook != nil {
		l.hook(n)
	}
	all := pkts.AsSlice()
	if len(all) == 0 || len(all) > qdiscBatch {
		l.t.Errorf("batch of %d packets", len(all))
		return 0, nil
	}
	qi := qdiscTestPick(all[0])
	if l.busy[qi].Swap(true) {
		l.t.Errorf("queue %d written by two goroutines at once", qi)
	}
	l.mu.Lock()
	for _, p := range all {
		if qdiscTestPick(p) != qi {
			l.t.Errorf("batch of queue %d has a packet of queue %d", qi, qdiscTestPick(p))
		}
		sender, seq := qdiscTestID(p)
		if want := l.next[sender]; seq < want {
			l.t.Errorf("sender %d: packet %d after %d", sender, seq, want-1)
		}
		l.next[sender] = seq + 1
	}
	l.mu.Unlock()
	l.packets.Add(int64(len(all)))
	l.busy[qi].Store(false)
	if l.fail && n%2 == 0 {
		return len(all) / 2, &tcpip.ErrNoBufferSpace{}
	}
	return len(all), nil
}

// qdiscTestPick maps a packet to its queue by its Hash, which the tests set
// to the sender's number.
func qdiscTestPick(p *gstack.PacketBuffer) int { return int(p.Hash % 2) }

func qdiscTestID(p *gstack.PacketBuffer) (sender, seq uint32) {
	b := p.Data().AsRange().ToSlice()
	return binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
}

// qdiscPackets makes packets and counts their releases.
type qdiscPackets struct {
	made, released atomic.Int64
}

func (c *qdiscPackets) new(sender, seq uint32, size int) *gstack.PacketBuffer {
	b := make([]byte, max(size, 8))
	binary.BigEndian.PutUint32(b, sender)
	binary.BigEndian.PutUint32(b[4:], seq)
	c.made.Add(1)
	p := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		Payload:   buffer.MakeWithData(b),
		OnRelease: func() { c.released.Add(1) },
	})
	p.Hash = sender
	return p
}

// send writes one packet as netstack does: the qdisc takes its own
// reference, the sender drops its one after the call.
func (c *qdiscPackets) send(d *bypassQdisc, sender, seq uint32, size int) tcpip.Error {
	p := c.new(sender, seq, size)
	defer p.DecRef()
	return d.WritePacket(p)
}

func (c *qdiscPackets) checkAllReleased(t *testing.T) {
	t.Helper()
	if m, r := c.made.Load(), c.released.Load(); m != r {
		t.Errorf("%d packets made, %d released: %d references leaked", m, r, m-r)
	}
}

// TestBypassQdiscManyWriters: many senders on two queues, the link
// reporting partial writes, Close while they send. Every packet is written
// once or refused, in order per sender, one writer per queue at a time, and
// every reference is released when Close returns.
func TestBypassQdiscManyWriters(t *testing.T) {
	const senders = 8
	perSender := 3000
	if txRace {
		perSender = 500
	}
	for _, closeEarly := range []bool{false, true} {
		lower := newQdiscLower(t, 2)
		lower.fail = true
		d := newBypassQdisc(lower, 2, 100, qdiscTestPick)
		var pk qdiscPackets
		var queued, refused, closedErrs atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range perSender {
					switch err := pk.send(d, uint32(s), uint32(i), 64); err.(type) {
					case nil:
						queued.Add(1)
					case *tcpip.ErrNoBufferSpace:
						refused.Add(1)
					case *tcpip.ErrClosedForSend:
						closedErrs.Add(1)
					default:
						t.Errorf("sender %d: %v", s, err)
						return
					}
				}
			}()
		}
		close(start)
		if closeEarly {
			for queued.Load() < int64(senders*perSender/4) {
				runtime.Gosched()
			}
			d.Close()
			wg.Wait()
		} else {
			wg.Wait()
			d.Close()
		}
		if err := pk.send(d, 0, uint32(perSender), 64); !isClosedForSend(err) {
			t.Errorf("send after Close: %v, want ErrClosedForSend", err)
		}
		pk.checkAllReleased(t)
		total := int64(senders*perSender + 1)
		if got := queued.Load() + refused.Load() + closedErrs.Load() + 1; got != total {
			t.Errorf("%d sends accounted for, want %d", got, total)
		}
		if got := lower.packets.Load(); got != queued.Load() {
			t.Errorf("close early %v: link got %d packets, %d were queued", closeEarly, got, queued.Load())
		}
		if got := int64(d.Drops()); got != refused.Load() {
			t.Errorf("Drops() = %d, %d sends refused", got, refused.Load())
		}
		t.Logf("close early %v: %d queued in %d link calls, %d dropped, %d after close", closeEarly, queued.Load(), lower.calls.Load(), refused.Load(), closedErrs.Load())
	}
}

func isClosedForSend(err tcpip.Error) bool {
	_, ok := err.(*tcpip.ErrClosedForSend)
	return ok
}

// TestBypassQdiscFullQueue: while the owner is stuck in the link, others
// queue up to the limit, then get ErrNoBufferSpace (counted); when the link
// moves again, the owner writes everything queued in batches.
func TestBypassQdiscFullQueue(t *testing.T) {
	const limit = 100
	lower := newQdiscLower(t, 2)
	entered, unblock := make(chan struct{}), make(chan struct{})
	lower.hook = func(n int64) {
		if n == 1 {
			close(entered)
			<-unblock
		}
	}
	d := newBypassQdisc(lower, 2, limit, qdiscTestPick)
	var pk qdiscPackets
	owner := make(chan tcpip.Error)
	go func() { owner <- pk.send(d, 0, 0, 64) }()
	<-entered
	for i := range limit {
		if err := pk.send(d, 2, uint32(i), 64); err != nil {
			t.Fatalf("packet %d into a queue of %d: %v", i, limit, err)
		}
	}
	if err := pk.send(d, 2, limit, 64); err == nil {
		t.Fatal("packet beyond the limit queued")
	} else if _, ok := err.(*tcpip.ErrNoBufferSpace); !ok {
		t.Fatalf("packet beyond the limit: %v, want ErrNoBufferSpace", err)
	}
	// The other queue is not affected.
	if err := pk.send(d, 1, 0, 64); err != nil {
		t.Fatalf("other queue: %v", err)
	}
	if d.Drops() != 1 {
		t.Errorf("Drops() = %d, want 1", d.Drops())
	}
	close(unblock)
	if err := <-owner; err != nil {
		t.Errorf("owner: %v", err)
	}
	d.Close()
	// 1 (owner) + 100 queued on queue 0, 1 on queue 1.
	if got := lower.packets.Load(); got != limit+2 {
		t.Errorf("link got %d packets, want %d", got, limit+2)
	}
	// Owner's packet, then the 100 in two batches, then queue 1's.
	if got := lower.calls.Load(); got != 4 {
		t.Errorf("%d link calls, want 4 (1 + 100 in batches of %d + 1)", got, qdiscBatch)
	}
	pk.checkAllReleased(t)
}

// TestBypassQdiscOwnerHandsOff: an owner that finds more queued than its
// budget (in bytes, or in batches for small packets) writes about its
// budget, hands the queue to a goroutine and returns; the goroutine writes
// the rest.
func TestBypassQdiscOwnerHandsOff(t *testing.T) {
	const queued = 1000
	for _, size := range []int{64, 4096} {
		// The owner's calls: its own packet, then full batches until
		// the budget is spent.
		ownerCalls, bytes := int64(1), size
		for ownerCalls < ownerBatches && bytes < ownerBudget {
			ownerCalls++
			bytes += qdiscBatch * size
		}
		lower := newQdiscLower(t, 2)
		entered, unblock, ownerDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
		lower.hook = func(n int64) {
			switch {
			case n == 1:
				close(entered)
				<-unblock
			case n > ownerCalls:
				// Only the goroutine taking over may get here:
				// the owner must have returned.
				select {
				case <-ownerDone:
				case <-time.After(10 * time.Second):
					t.Errorf("size %d: call %d: the owner kept writing beyond its budget (%d calls)", size, n, ownerCalls)
				}
			}
		}
		d := newBypassQdisc(lower, 2, 2*queued, qdiscTestPick)
		var pk qdiscPackets
		go func() {
			pk.send(d, 0, 0, size)
			close(ownerDone)
		}()
		<-entered
		for i := range queued {
			if err := pk.send(d, 2, uint32(i), size); err != nil {
				t.Fatal(err)
			}
		}
		close(unblock)
		<-ownerDone
		d.Close()
		if got := lower.packets.Load(); got != queued+1 {
			t.Errorf("size %d: link got %d packets, want %d", size, got, queued+1)
		}
		if lower.calls.Load() <= ownerCalls {
			t.Errorf("size %d: %d link calls: no hand-off", size, lower.calls.Load())
		}
		pk.checkAllReleased(t)
	}
}
