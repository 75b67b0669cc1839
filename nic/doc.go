// Package nic drives one (interface, queue) through AF_XDP: a Port.
//
// A Port owns a UMEM (anonymous memory cut into Config.FrameSize frames), a
// bufring.FramePool over it, and two sockets bound to one queue with their
// four rings mapped into the process: the receive socket registers the UMEM
// and has the fill, RX and completion rings, the transmit socket shares its
// UMEM (XDP_SHARED_UMEM) and has the TX ring. In copy mode the kernel
// transmits from a socket's TX ring whenever that socket is polled, under
// the socket's mutex; with one socket, the poller Wait parks in would
// contend with Transmit's kick for that mutex and spin on it while the kick
// runs. The transmit socket is never polled. The XDP program
// of package bpf steers the queue's frames for the engine's addresses to the
// socket through its XSKMAP (Config.Map); everything else goes on to the
// kernel.
//
// The data path is batch-shaped and allocation-free:
//
//	n, err := port.Receive(descs)     // frames now belong to the caller
//	... port.Frame(descs[i]) ...      // view into the UMEM
//	port.Release(descs[:n])           // back to the fill ring
//
//	k := port.Alloc(descs)            // free frames to build packets in
//	... copy(port.Frame(descs[i]), pkt); descs[i].Len = uint32(len(pkt)) ...
//	n, err = port.Transmit(descs[:k]) // one kick per batch, if the kernel wants it
//
// and Wait parks the goroutine in the Go runtime's poller (no OS thread
// blocked), optionally after busy-polling the RX ring.
//
// Reception and transmission share the UMEM's frames. Frames lent to the
// kernel for reception come back only as packets arrive, so the port lends
// at most Config.FillFrames (fill ring plus received, not yet taken
// descriptors) and Open refuses a Config whose remaining frames could not
// keep transmission going; the pool's RX reserve protects reception the
// other way round. A short Alloc is therefore always temporary (frames in
// flight or held by callers) and counted in Stats.TxAllocShort; WaitTX
// sleeps until frames come back (a completion, a Release) instead of
// spinning on Alloc. Reception short of frames (every frame held) is
// counted per port: Stats.FillPoolEmpty, and the kernel's
// KernelStats.RxFillRingEmptyDescs for the frames it dropped meanwhile.
//
// The rings are single-producer single-consumer queues shared with the
// kernel. The port reads the kernel's index with a load-acquire and publishes
// its own with a store-release once per batch (ring_unsafe.go), and caches
// the kernel's index so a batch usually touches the shared cache line once.
// With XDP_USE_NEED_WAKEUP the kernel says when it must be kicked: Transmit
// calls sendto only then, and the fill ring is kicked with recvfrom only
// when a zero-copy driver asks. Kick errors are returned, never panicked:
// ENETDOWN (wrapped in ErrLinkDown) while the link is down, ENXIO when the
// device went away, ENOBUFS and others as they come; EAGAIN and EBUSY only
// mean "kick again later" and are counted.
//
// Why not asavie/xdp's Socket: the project started on github.com/asavie/xdp
// v0.3.3, and package nic's benchmarks still run its README loop as the
// baseline. Its ring methods use plain loads and stores for the shared
// indices (no acquire/release: upstream issue #34), Transmit panics on
// unexpected sendto errors (#31: EINVAL on ixgbe), GetDescs scans a []bool
// per call to find free frames, and the bind flags (need_wakeup, copy,
// zero-copy) are a package-level variable. Its Transmit places what fits on
// the TX ring and kicks once, the kernel sends 32 frames per kick in copy
// mode, and the README loop drops the rest: in the L2 echo benchmark it
// sends back about half of what it receives. Two defects decide against even
// using its NewSocket for setup: it never unmaps the four ring mappings, so a
// closed socket is never released (it keeps its queue busy and its UMEM
// pinned until the process exits; on the lab, binding the queue again after
// its Close still failed with EBUSY after a second of retries), and when
// bind fails, as a zero-copy attempt on veth does, the half-built socket
// leaks the same way with no handle left to free it. Package nic therefore
// performs the same setsockopt/mmap/bind sequence itself (socket_unsafe.go),
// tearing every failed attempt down, which is what makes zero-copy fallback
// and the bounded EBUSY retry after a re-bind safe.
//
// Modes: on veth AF_XDP runs in copy mode. ZeroCopyAuto tries zero-copy
// and falls back to copy with the reason logged and counted; ZeroCopyForce
// fails with an error wrapping ErrNotSupported where the driver has none.
//
// Copy mode transmits from sendto, at most a budget of frames per call
// (32 by default); Open raises the budget to the TX ring size
// (XDP_MAX_TX_SKB_BUDGET, where the kernel has it: 6.18 here) so one kick
// sends a batch, and Transmit kicks again while the kernel answers EAGAIN
// and makes progress.
//
// Checksum offload: where the kernel has AF_XDP TX metadata (6.11 and
// later), the UMEM reserves 24 bytes of it before every packet sent (Alloc's
// frames start TxHeadroom bytes in), and TxChecksum asks for a packet's TCP
// or UDP checksum to be finished on the way out. In copy mode the kernel
// marks the skb CHECKSUM_PARTIAL, as it does its own sockets' packets: the
// device finishes the sum, or the kernel does in software for a device
// without checksum offload, and a veth hands it to the receiver unfinished,
// which trusts it as it trusts the kernel's own. Zero-copy drivers differ
// in which TX metadata they implement, so the port offers no offload there.
//
// Statistics: Stats combines the port's own counters with the kernel's
// XDP_STATISTICS (rx_dropped, rx_ring_full, rx_fill_ring_empty_descs, invalid
// descriptors, tx_ring_empty_descs).
//
// Close removes the socket from the XSKMAP, unmaps the rings, closes the
// socket and unmaps the UMEM. If the process dies instead, the kernel does
// the same: a dead process leaves no socket behind, and the XSKMAP entry goes
// with the socket.
package nic
