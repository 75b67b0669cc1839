package dataplane

import (
	"strconv"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/stack"
)

// Stats is the snapshot of the data plane's counters, by interface (its
// name), then dedicated queue (the NIC's queue id). The JSON keys are
// those of the engine's /stats; which metric each field becomes is the
// engine's business.
type Stats struct {
	Interfaces map[string]*InterfaceStats `json:"interfaces"`
	// NetstackDrops are netstack's drops by direction, then reason (see
	// stack.Stack.Drops): stack-wide, as netstack counts them per stack,
	// not per interface or queue.
	NetstackDrops map[string]map[string]uint64 `json:"netstack_drops"`
	// DatagramBuffers is the pool of the UDP fast path's received payload
	// copies (stack-wide, one per datagram queued for a socket).
	DatagramBuffers DatagramBufferStats `json:"datagram_buffers"`
}

// DatagramBufferStats are the figures of the stack's datagram buffer pool:
// InUse is the datagrams queued for sockets now; Gets and Puts the buffers
// taken and given back; Allocs those allocated because none was pooled.
type DatagramBufferStats struct {
	InUse  int64  `json:"in_use"`
	Gets   uint64 `json:"gets"`
	Puts   uint64 `json:"puts"`
	Allocs uint64 `json:"allocs"`
}

// InterfaceStats are the counters of one interface.
type InterfaceStats struct {
	// Queues are the dedicated queues, by the NIC's queue id.
	Queues map[string]*QueueStats `json:"queues"`
	// Steering are the steering program's counters per RX queue, dedicated
	// or not; "other" counts the queues above the highest dedicated one.
	Steering map[string]bpf.Counters `json:"steering"`
}

// QueueStats are the counters of one dedicated queue: its UMEM frame pool,
// its AF_XDP port (with the kernel's XDP_STATISTICS) and its netstack
// endpoint queue.
type QueueStats struct {
	UMEM     bufring.FrameStats `json:"umem"`
	Port     nic.Stats          `json:"port"`
	Endpoint stack.QueueStats   `json:"endpoint"`
}

// Stats takes the data plane's snapshot. A port whose kernel statistics
// cannot be read (closing) still gives its own counters.
func (x *Plane) Stats() *Stats {
	s := &Stats{Interfaces: map[string]*InterfaceStats{}, NetstackDrops: map[string]map[string]uint64{}}
	for _, xi := range x.ifs {
		is := &InterfaceStats{Queues: map[string]*QueueStats{}, Steering: map[string]bpf.Counters{}}
		s.Interfaces[xi.name] = is
		var eps []stack.QueueStats
		if xi.ep != nil {
			eps = xi.ep.Stats()
		}
		for i := range max(len(xi.ports), len(eps)) {
			qs := &QueueStats{}
			if i < len(xi.ports) {
				qs.UMEM = xi.ports[i].Pool().Stats()
				qs.Port, _ = xi.ports[i].Stats()
			}
			if i < len(eps) {
				qs.Endpoint = eps[i]
			}
			is.Queues[xi.queueLabel(i)] = qs
		}
		if xi.steer != nil {
			if qs, other, err := xi.steer.QueueCounters(); err == nil {
				for q, c := range qs {
					is.Steering[strconv.Itoa(q)] = c
				}
				is.Steering["other"] = other
			}
		}
	}
	if x.st != nil {
		d := x.st.DatagramBufferStats()
		s.DatagramBuffers = DatagramBufferStats{InUse: d.InUse, Gets: d.Gets, Puts: d.Puts, Allocs: d.Allocs}
		for _, d := range x.st.Drops() {
			if s.NetstackDrops[d.Dir] == nil {
				s.NetstackDrops[d.Dir] = map[string]uint64{}
			}
			s.NetstackDrops[d.Dir][d.Reason] = d.Count
		}
	}
	return s
}

// Totals are the figures of a Stats that `xdpnet stats` and the demo
// show, summed over interfaces and queues.
type Totals struct {
	Frames, FramesInUse int64
	// Redirected and Passed are the steering program's verdicts.
	Redirected, Passed uint64
	// RxPackets and TxPackets are the AF_XDP sockets'; KernelDrops the
	// frames and descriptors the kernel dropped at them.
	RxPackets, TxPackets, KernelDrops uint64
	// EndpointDrops and NetstackDrops are the drops of every reason.
	EndpointDrops, NetstackDrops uint64
}

// Totals sums s up.
func (s *Stats) Totals() Totals {
	var t Totals
	for _, is := range s.Interfaces {
		for _, q := range is.Queues {
			t.Frames += int64(q.UMEM.Frames)
			t.FramesInUse += q.UMEM.InUse
			t.RxPackets += q.Port.RxPackets
			t.TxPackets += q.Port.TxPackets
			k := q.Port.Kernel
			t.KernelDrops += k.RxDropped + k.RxInvalidDescs + k.TxInvalidDescs + k.RxRingFull + k.RxFillRingEmptyDescs
			t.EndpointDrops += q.Endpoint.RXDrops() + q.Endpoint.TXDrops()
		}
		for _, c := range is.Steering {
			t.Redirected += c.Redirected
			t.Passed += c.Passed
		}
	}
	for _, byReason := range s.NetstackDrops {
		for _, n := range byReason {
			t.NetstackDrops += n
		}
	}
	return t
}

// queueLabel is the queue label of endpoint queue i: the NIC's queue id.
func (xi *xdpIf) queueLabel(i int) string {
	if i < len(xi.queueIDs) {
		return strconv.Itoa(xi.queueIDs[i])
	}
	return strconv.Itoa(i)
}
