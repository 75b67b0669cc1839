package stack

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// flowTableSize is the number of slots of an Endpoint's flow table: enough
// that a SYN is rarely overwritten by another one before its connection is
// accepted (8192 SYNs later on average). 64 KiB per multi-queue endpoint.
const flowTableSize = 1 << 13

// flowTable remembers, for recent TCP SYNs, the RX queue each arrived on,
// so that the application can serve an accepted connection on the worker of
// that queue (FlowQueue). It is a direct-mapped cache keyed by a seeded hash
// of the 4-tuple: the receive goroutines write it and anyone reads it, with
// one atomic load or store each, no lock and no allocation. A slot holds the
// hash's upper 48 bits as a tag and the queue index plus one in the low 16
// bits; a SYN whose hash lands on a taken slot evicts the older entry, so a
// lookup may miss (the caller falls back to its own choice) but it returns a
// wrong queue only on a 48-bit tag collision.
type flowTable struct {
	seed  uint64
	slots []atomic.Uint64
}

func newFlowTable() *flowTable {
	return &flowTable{seed: rand.Uint64() | 1, slots: make([]atomic.Uint64, flowTableSize)}
}

const flowQueueBits = 16

func (t *flowTable) put(h uint64, queue int) {
	t.slots[h&(flowTableSize-1)].Store(h&^(1<<flowQueueBits-1) | uint64(queue+1))
}

func (t *flowTable) get(h uint64) (int, bool) {
	v := t.slots[h&(flowTableSize-1)].Load()
	q := int(v & (1<<flowQueueBits - 1))
	if q == 0 || v&^(1<<flowQueueBits-1) != h&^(1<<flowQueueBits-1) {
		return 0, false
	}
	return q - 1, true
}

// hash mixes a flow's addresses (4 or 16 bytes each, the same family) and
// ports, seen from this host: local is the SYN's destination.
func (t *flowTable) hash(local, remote []byte, lport, rport uint16) uint64 {
	h := t.seed ^ uint64(lport)<<16 ^ uint64(rport)
	if len(local) == 4 {
		h = mix(h, uint64(binary.BigEndian.Uint32(local))<<32|uint64(binary.BigEndian.Uint32(remote)))
	} else {
		h = mix(h, binary.BigEndian.Uint64(local[:8]))
		h = mix(h, binary.BigEndian.Uint64(local[8:16]))
		h = mix(h, binary.BigEndian.Uint64(remote[:8]))
		h = mix(h, binary.BigEndian.Uint64(remote[8:16]))
	}
	return mix(h, t.seed)
}

// mix is one round of a multiply-fold hash (as in wyhash).
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a^0xa0761d6478bd642f, b^0xe7037ed1a0b428db)
	return hi ^ lo
}

// noteSYN records the queue of a TCP SYN (without ACK) addressed to this
// host; b is the network packet, its checksums verified or trusted. Anything
// else, including IPv4 fragments and IPv6 packets with extension headers, is
// ignored.
func (t *flowTable) noteSYN(proto tcpip.NetworkProtocolNumber, b []byte, queue int) {
	var local, remote, tcp []byte
	switch proto {
	case header.IPv4ProtocolNumber:
		if len(b) < header.IPv4MinimumSize {
			return
		}
		ip := header.IPv4(b)
		hl := int(ip.HeaderLength())
		if ip.Protocol() != uint8(header.TCPProtocolNumber) || hl < header.IPv4MinimumSize || hl > len(b) ||
			ip.FragmentOffset() != 0 || ip.Flags()&header.IPv4FlagMoreFragments != 0 {
			return
		}
		local, remote, tcp = b[16:20], b[12:16], b[hl:]
	case header.IPv6ProtocolNumber:
		if len(b) < header.IPv6MinimumSize || header.IPv6(b).NextHeader() != uint8(header.TCPProtocolNumber) {
			return
		}
		local, remote, tcp = b[24:40], b[8:24], b[header.IPv6MinimumSize:]
	default:
		return
	}
	if len(tcp) < header.TCPMinimumSize || header.TCP(tcp).Flags()&(header.TCPFlagSyn|header.TCPFlagAck) != header.TCPFlagSyn {
		return
	}
	th := header.TCP(tcp)
	t.put(t.hash(local, remote, th.DestinationPort(), th.SourcePort()), queue)
}

// FlowQueue reports the RX queue on which the SYN of the TCP connection
// between local (this host) and remote arrived, so that a server with one
// worker per queue can hand an accepted connection to the worker whose
// queue carries its packets. It is meant to be called right after Accept:
// the answer comes from a bounded table of recent SYNs (see flowTable), and
// ok is false when the SYN was never seen or its entry was overwritten by
// later ones; the caller then picks a worker itself. With a single queue it
// always reports queue 0. It does not allocate and is safe for concurrent
// use.
func (e *Endpoint) FlowQueue(local, remote netip.AddrPort) (queue int, ok bool) {
	if len(e.queues) == 1 {
		return 0, true
	}
	la, ra := local.Addr().Unmap(), remote.Addr().Unmap()
	var h uint64
	switch {
	case la.Is4() && ra.Is4():
		l, r := la.As4(), ra.As4()
		h = e.flows.hash(l[:], r[:], local.Port(), remote.Port())
	case la.Is6() && ra.Is6():
		l, r := la.As16(), ra.As16()
		h = e.flows.hash(l[:], r[:], local.Port(), remote.Port())
	default:
		return 0, false
	}
	return e.flows.get(h)
}
