package stack

import (
	"encoding/binary"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The transmit ACK filter drops a pure TCP ACK when a later packet of the
// same flow in the same send batch, one that carries data or a FIN and so
// is sent anyway, acknowledges at least as much with at least as large a
// window: the peer learns nothing less. It is CAKE's conservative ACK filter
// (sch_cake) narrowed to piggybacking within one WritePackets batch on one
// queue, where netstack queued both packets before either left; every frame
// not sent saves a UMEM copy and, on veth, the kernel peer's receive path
// run inside our kick. Pure ACKs never replace each other, so a receiver's
// ACK clock is never thinned (thinning it made bulk transfers burstier:
// bench/stack-ackfilter.md).
//
// What is kept, always: anything that is not TCP with only the ACK flag and
// no payload (SYN, FIN, RST, URG, PSH, ECE and CWR carry more than an
// acknowledgement); ACKs with options other than timestamps (SACK blocks
// say what arrived out of order); and a pure ACK followed by another pure
// ACK with the same ack number, which may be a duplicate-ACK train that
// drives the peer's fast retransmit (RFC 5681 section 3.2). A data segment
// with the same ack number does replace an earlier pure ACK: segments with
// data never count as duplicate ACKs, so the one signal that can go is a
// single duplicate ACK of a peer that did not negotiate SACK, in a batch
// that also carries our data; the peer then falls back to its timers, and
// no data is lost.

// ackFilterWindow bounds how far the filter looks ahead: a batch is
// filtered in windows of this many packets (one bit each in a mask).
const ackFilterWindow = 64

// ackFilterSlots is the size of the per-window flow table. Two flows that
// share a slot evict each other, which only makes the filter drop less.
const (
	ackFilterSlotBits = 4
	ackFilterSlots    = 1 << ackFilterSlotBits
)

// ackFilterOn switches the filter on. It is off by default: a same-run A/B
// (bench/stack-ackfilter.md) decides whether it earns its place; tests and
// benchmarks set it.
var ackFilterOn atomic.Bool

// acksFiltered counts the pure ACKs the filter dropped, over every endpoint
// of the process. TODO(lead): a per-queue QueueStats field if it is kept.
var acksFiltered atomic.Uint64

// ACKsFiltered reports how many pure ACKs the transmit ACK filter dropped in
// this process.
func ACKsFiltered() uint64 { return acksFiltered.Load() }

// ackInfo is what the filter reads from one TCP packet.
type ackInfo struct {
	addrs []byte // source and destination addresses, in the network header
	ports uint32 // source and destination ports
	ack   uint32
	win   uint16 // raw window field: one flow, one scale
	// acks: the ACK flag is set and neither SYN nor RST is, so the packet
	// may supersede an earlier pure ACK.
	acks bool
	// data: the packet carries payload or a FIN, so it is sent anyway
	// and an earlier pure ACK can ride on it.
	data bool
	pure bool // only the ACK flag, no payload, no options but timestamps
}

// parseACK reads pkt's TCP header without allocating. ok is false for
// anything that is not an unfragmented TCP packet with sane headers.
func parseACK(pkt *gstack.PacketBuffer) (a ackInfo, ok bool) {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return a, false
	}
	nh := pkt.NetworkHeader().Slice()
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		if len(nh) < header.IPv4MinimumSize || nh[9] != uint8(header.TCPProtocolNumber) ||
			binary.BigEndian.Uint16(nh[6:8])&0x3fff != 0 { // MF or a fragment offset
			return a, false
		}
		a.addrs = nh[12:20]
	case header.IPv6ProtocolNumber:
		if len(nh) < header.IPv6MinimumSize || nh[6] != uint8(header.TCPProtocolNumber) {
			return a, false
		}
		a.addrs = nh[8:40]
	default:
		return a, false
	}
	th := pkt.TransportHeader().Slice()
	if len(th) < header.TCPMinimumSize {
		return a, false
	}
	off := int(th[12]>>4) * 4
	if off < header.TCPMinimumSize || off > len(th) {
		return a, false
	}
	flags := header.TCPFlags(th[13])
	a.ports = binary.BigEndian.Uint32(th[0:4])
	a.ack = binary.BigEndian.Uint32(th[8:12])
	a.win = binary.BigEndian.Uint16(th[14:16])
	a.acks = flags&header.TCPFlagAck != 0 && flags&(header.TCPFlagSyn|header.TCPFlagRst) == 0
	a.data = pkt.Data().Size() > 0 || flags&header.TCPFlagFin != 0
	a.pure = flags == header.TCPFlagAck && off == len(th) && pkt.Data().Size() == 0 &&
		onlyTimestamps(th[header.TCPMinimumSize:off])
	return a, true
}

// onlyTimestamps reports whether opts holds nothing but NOP, EOL and one
// well-formed timestamp option.
func onlyTimestamps(opts []byte) bool {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return true
		case header.TCPOptionNOP:
			i++
		case header.TCPOptionTS:
			if i+header.TCPOptionTSLength > len(opts) || opts[i+1] != header.TCPOptionTSLength {
				return false
			}
			i += header.TCPOptionTSLength
		default:
			return false
		}
	}
	return true
}

func (a *ackInfo) sameFlow(b *ackInfo) bool {
	return a.ports == b.ports && string(a.addrs) == string(b.addrs)
}

// slot picks a's flow table slot from its ports and the low address
// bytes (top bits of a multiplicative hash).
func (a *ackInfo) slot() int {
	n := len(a.addrs) / 2
	h := a.ports*0x9e3779b1 ^
		binary.BigEndian.Uint32(a.addrs[n-4:n])*0x85ebca6b ^
		binary.BigEndian.Uint32(a.addrs[len(a.addrs)-4:])*0xc2b2ae35
	h ^= h >> 15
	h *= 0x2c1b3c6d
	return int(h >> (32 - ackFilterSlotBits))
}

// supersedes reports whether sending later instead of both loses the peer
// nothing that a (an earlier pure ACK of the same flow) told it.
func (later *ackInfo) supersedes(a *ackInfo) bool {
	return later.acks && later.data &&
		int32(later.ack-a.ack) >= 0 &&
		later.win >= a.win
}

// ackFilterMask returns a bit per packet of pkts (at most ackFilterWindow)
// that the filter drops. It walks the window backwards, keeping per flow
// the nearest later packet that will be sent (dom) and the flow's next
// packet, sent or not: an earlier pure ACK goes only if dom supersedes it
// and the next packet is not a duplicate of it.
func ackFilterMask(pkts []*gstack.PacketBuffer) uint64 {
	type slot struct {
		dom ackInfo
		// The flow's next packet, dropped or not: a pure ACK (nextPure)
		// acking nextAck?
		nextPure bool
		nextAck  uint32
		used     bool
	}
	var (
		table [ackFilterSlots]slot
		drop  uint64
	)
	for i := len(pkts) - 1; i >= 0; i-- {
		a, ok := parseACK(pkts[i])
		if !ok {
			continue
		}
		s := &table[a.slot()]
		if a.pure && s.used && s.dom.sameFlow(&a) && s.dom.supersedes(&a) &&
			!(s.nextPure && s.nextAck == a.ack) {
			drop |= 1 << uint(i)
			s.nextPure, s.nextAck = true, a.ack
			continue
		}
		*s = slot{dom: a, nextPure: a.pure, nextAck: a.ack, used: true}
	}
	return drop
}
