package nic

import "sync/atomic"

// Stats are a Port's counters: its own, kept per batch, and the kernel's
// XDP_STATISTICS for the socket. All count since Open.
type Stats struct {
	RxPackets, RxBytes uint64 // descriptors (and their bytes) Receive returned
	TxPackets, TxBytes uint64 // descriptors Transmit placed on the TX ring
	TxCompleted        uint64 // frames the kernel reported sent (completion ring)

	TxRingFull    uint64 // descriptors Transmit could not place: ring full
	TxAllocShort  uint64 // Alloc calls that found fewer free frames than asked
	TxWaits       uint64 // WaitTX calls that had to sleep for frames or ring room
	TxWaitWakeups uint64 // times those woke: frames came back, or to poll completions
	TxKicks       uint64 // sendto wakeups issued for the TX ring
	TxKickBusy    uint64 // kicks the kernel answered EAGAIN/EBUSY without progress
	TxKickRetries uint64 // kicks the port made on its own, after a kick left frames on the TX ring
	TxKickErrors  uint64 // kicks that failed otherwise (ENXIO, ENOBUFS, ...)
	LinkDown      uint64 // kicks that found the link down (ENETDOWN)
	FillKicks     uint64 // recvfrom wakeups issued for the fill ring
	FillPoolEmpty uint64 // fill-ring refills that found the pool empty

	InvalidRelease uint64 // descriptors Release refused: no frame of this port

	PollSleeps   uint64 // Waits that slept (parked in the runtime poller)
	BusyPollHits uint64 // Waits the busy-poll spin satisfied

	BindRetries      uint64 // binds retried because the queue was still busy
	ZeroCopyFallback uint64 // 1 if ZeroCopyAuto fell back to copy mode

	Kernel KernelStats
}

// KernelStats is struct xdp_statistics (getsockopt XDP_STATISTICS).
type KernelStats struct {
	// RxDropped counts frames dropped for other reasons than below (e.g.
	// too large for a frame).
	RxDropped uint64
	// RxInvalidDescs and TxInvalidDescs count descriptors the kernel
	// rejected on the fill and TX rings.
	RxInvalidDescs, TxInvalidDescs uint64
	// RxRingFull counts frames dropped because the RX ring was full: the
	// application did not receive fast enough.
	RxRingFull uint64
	// RxFillRingEmptyDescs counts frames dropped because the fill ring was
	// empty: the application did not give frames back fast enough.
	RxFillRingEmptyDescs uint64
	// TxRingEmptyDescs counts wakeups that found the TX ring empty.
	TxRingEmptyDescs uint64
}

type counters struct {
	rxPackets, rxBytes, txPackets, txBytes, txCompleted atomic.Uint64
	txRingFull, txKicks, txKickBusy, txKickErrors       atomic.Uint64
	linkDown, fillKicks, fillPoolEmpty, invalidRelease  atomic.Uint64
	pollSleeps, busyPollHits, bindRetries, txAllocShort atomic.Uint64
	zeroCopyFallback, txKickRetries                     atomic.Uint64
	txWaits, txWaitWakeups                              atomic.Uint64
}

// Stats returns the port's counters. It fails only when the kernel's
// statistics cannot be read (then the own counters are still filled in), or
// with ErrClosed.
func (p *Port) Stats() (Stats, error) {
	s := p.ownStats()
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed.Load() {
		return s, ErrClosed
	}
	// The receive side's figures are the RX socket's (the fill ring's,
	// which both sockets share, too); the transmit side's the TX socket's.
	rx, err := p.sock.statistics()
	if err != nil {
		return s, err
	}
	tx, err := p.txSock.statistics()
	if err != nil {
		return s, err
	}
	s.Kernel = KernelStats{
		RxDropped: rx.Rx_dropped, RxInvalidDescs: rx.Rx_invalid_descs, TxInvalidDescs: tx.Tx_invalid_descs,
		RxRingFull: rx.Rx_ring_full, RxFillRingEmptyDescs: rx.Rx_fill_ring_empty_descs,
		TxRingEmptyDescs: tx.Tx_ring_empty_descs,
	}
	return s, nil
}

// ownStats returns the port's own counters, without the kernel's.
func (p *Port) ownStats() Stats {
	c := &p.ctr
	return Stats{
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
		TxCompleted: c.txCompleted.Load(), TxRingFull: c.txRingFull.Load(),
		TxAllocShort: c.txAllocShort.Load(), TxWaits: c.txWaits.Load(), TxWaitWakeups: c.txWaitWakeups.Load(),
		TxKicks: c.txKicks.Load(), TxKickBusy: c.txKickBusy.Load(), TxKickRetries: c.txKickRetries.Load(),
		TxKickErrors: c.txKickErrors.Load(), LinkDown: c.linkDown.Load(),
		FillKicks: c.fillKicks.Load(), FillPoolEmpty: c.fillPoolEmpty.Load(),
		InvalidRelease: c.invalidRelease.Load(),
		PollSleeps:     c.pollSleeps.Load(), BusyPollHits: c.busyPollHits.Load(),
		BindRetries: c.bindRetries.Load(), ZeroCopyFallback: c.zeroCopyFallback.Load(),
	}
}
