package stack

import "sync/atomic"

// QueueStats are the counters of one Endpoint queue since creation. The
// port's own counters (ring full, kicks, kernel drops) are in nic.Stats;
// netstack's protocol counters in Stack.Netstack().Stats(), its drops by
// reason in Stack.Drops.
type QueueStats struct {
	RXFrames, RXBytes  uint64 // frames taken from the RX ring
	RXBatches          uint64 // non-empty receive batches
	RXDropShort        uint64 // frames shorter than an Ethernet header
	RXDropOtherHost    uint64 // frames for another unicast MAC (not promiscuous)
	RXDropChecksumIPv4 uint64 // frames with a wrong IPv4 header checksum
	RXDropChecksumTCP  uint64 // frames with a wrong TCP checksum
	RXDropChecksumUDP  uint64 // frames with a wrong UDP checksum, or none over IPv6
	RXDropChecksumICMP uint64 // frames with a wrong ICMPv4 or ICMPv6 checksum
	RXUnverified       uint64 // frames whose transport checksum could not be checked here
	RXErrors           uint64 // receive or wait errors from the port
	RXUDPFast          uint64 // datagrams handed straight to connected or address-bound UDP sockets (counted in RXFrames too)

	TXPackets      uint64 // netstack packets sent (a GSO segment counts once)
	TXFrames       uint64 // frames put on the TX ring
	TXBytes        uint64 // their bytes
	TXGSOPackets   uint64 // GSO segments cut into frames
	TXGSOSegments  uint64 // frames those were cut into
	TXKicks        uint64 // Transmit calls
	TXUDPFast      uint64 // datagrams connected or address-bound UDP sockets wrote straight into frames (counted in TXPackets too)
	TXWaits        uint64 // sends that had to wait for frames or ring room
	TXWaitRounds   uint64 // sleeps of those sends in the port's WaitTX, each followed by a retry
	TXDropNoFrame  uint64 // frames dropped: no free UMEM frame within TXWait
	TXDropRingFull uint64 // frames dropped: TX ring full for TXWait
	TXDropLinkDown uint64 // frames dropped: link down
	TXDropTooBig   uint64 // packets dropped: larger than a frame
	TXDropError    uint64 // frames dropped after another transmit error
	TXErrors       uint64 // transmit errors other than ring full and link down
}

// TXDrops is the sum of the TX drop counters.
func (s QueueStats) TXDrops() uint64 {
	return s.TXDropNoFrame + s.TXDropRingFull + s.TXDropLinkDown + s.TXDropTooBig + s.TXDropError
}

// RXDropChecksum is the sum of the checksum drop counters.
func (s QueueStats) RXDropChecksum() uint64 {
	return s.RXDropChecksumIPv4 + s.RXDropChecksumTCP + s.RXDropChecksumUDP + s.RXDropChecksumICMP
}

// RXDrops is the sum of the RX drop counters.
func (s QueueStats) RXDrops() uint64 {
	return s.RXDropShort + s.RXDropOtherHost + s.RXDropChecksum()
}

// Drops lists the queue's drop counters by direction and reason, every
// reason whether it counted anything or not, in a fixed order. Each dropped
// frame or packet is in exactly one of them.
func (s QueueStats) Drops() []Drop {
	return []Drop{
		{DirRX, "short", s.RXDropShort},
		{DirRX, "other_host", s.RXDropOtherHost},
		{DirRX, "checksum_ipv4", s.RXDropChecksumIPv4},
		{DirRX, "checksum_tcp", s.RXDropChecksumTCP},
		{DirRX, "checksum_udp", s.RXDropChecksumUDP},
		{DirRX, "checksum_icmp", s.RXDropChecksumICMP},
		{DirTX, "no_frame", s.TXDropNoFrame},
		{DirTX, "ring_full", s.TXDropRingFull},
		{DirTX, "link_down", s.TXDropLinkDown},
		{DirTX, "too_big", s.TXDropTooBig},
		{DirTX, "error", s.TXDropError},
	}
}

func (s *QueueStats) add(o QueueStats) {
	s.RXFrames += o.RXFrames
	s.RXBytes += o.RXBytes
	s.RXBatches += o.RXBatches
	s.RXDropShort += o.RXDropShort
	s.RXDropOtherHost += o.RXDropOtherHost
	s.RXDropChecksumIPv4 += o.RXDropChecksumIPv4
	s.RXDropChecksumTCP += o.RXDropChecksumTCP
	s.RXDropChecksumUDP += o.RXDropChecksumUDP
	s.RXDropChecksumICMP += o.RXDropChecksumICMP
	s.RXUnverified += o.RXUnverified
	s.RXErrors += o.RXErrors
	s.RXUDPFast += o.RXUDPFast
	s.TXPackets += o.TXPackets
	s.TXFrames += o.TXFrames
	s.TXBytes += o.TXBytes
	s.TXGSOPackets += o.TXGSOPackets
	s.TXGSOSegments += o.TXGSOSegments
	s.TXKicks += o.TXKicks
	s.TXUDPFast += o.TXUDPFast
	s.TXWaits += o.TXWaits
	s.TXWaitRounds += o.TXWaitRounds
	s.TXDropNoFrame += o.TXDropNoFrame
	s.TXDropRingFull += o.TXDropRingFull
	s.TXDropLinkDown += o.TXDropLinkDown
	s.TXDropTooBig += o.TXDropTooBig
	s.TXDropError += o.TXDropError
	s.TXErrors += o.TXErrors
}

// counters are a queue's live counters. Each is written by one side (the
// receive goroutine, or a sender under txMu) and read by Stats at any time.
type counters struct {
	rxFrames, rxBytes, rxBatches      atomic.Uint64
	rxDropShort, rxDropOtherHost      atomic.Uint64
	rxUnverified, rxErrors, rxUDPFast atomic.Uint64
	rxDropChecksum                    [numBadChecksums]atomic.Uint64 // by badChecksumIndex

	txPackets, txFrames, txBytes, txGSOPackets, txGSOSegments atomic.Uint64
	txKicks, txWaits, txWaitRounds, txUDPFast                 atomic.Uint64
	txDropNoFrame, txDropRingFull, txDropLinkDown             atomic.Uint64
	txDropTooBig, txDropError, txErrors                       atomic.Uint64
}

func (c *counters) load() QueueStats {
	return QueueStats{
		RXFrames: c.rxFrames.Load(), RXBytes: c.rxBytes.Load(), RXBatches: c.rxBatches.Load(),
		RXDropShort: c.rxDropShort.Load(), RXDropOtherHost: c.rxDropOtherHost.Load(),
		RXDropChecksumIPv4: c.rxDropChecksum[badChecksumIndex(csumBadIPv4)].Load(),
		RXDropChecksumTCP:  c.rxDropChecksum[badChecksumIndex(csumBadTCP)].Load(),
		RXDropChecksumUDP:  c.rxDropChecksum[badChecksumIndex(csumBadUDP)].Load(),
		RXDropChecksumICMP: c.rxDropChecksum[badChecksumIndex(csumBadICMP)].Load(),
		RXUnverified:       c.rxUnverified.Load(),
		RXErrors:           c.rxErrors.Load(), RXUDPFast: c.rxUDPFast.Load(),

		TXPackets: c.txPackets.Load(), TXFrames: c.txFrames.Load(), TXBytes: c.txBytes.Load(),
		TXGSOPackets: c.txGSOPackets.Load(), TXGSOSegments: c.txGSOSegments.Load(),
		TXKicks: c.txKicks.Load(), TXWaits: c.txWaits.Load(), TXWaitRounds: c.txWaitRounds.Load(), TXUDPFast: c.txUDPFast.Load(),
		TXDropNoFrame: c.txDropNoFrame.Load(), TXDropRingFull: c.txDropRingFull.Load(),
		TXDropLinkDown: c.txDropLinkDown.Load(), TXDropTooBig: c.txDropTooBig.Load(),
		TXDropError: c.txDropError.Load(), TXErrors: c.txErrors.Load(),
	}
}
