package nic

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bufring"
)

// Desc is an AF_XDP descriptor (struct xdp_desc): the UMEM address of a
// packet's first byte, its length, and options (XDP_TX_METADATA once
// TxChecksum asked for an offload; no multi-buffer). Descriptors are
// values; the frame they name is owned by whoever the API below says.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// batch is the size of the scratch arrays the port moves addresses in.
const batch = 256

// Port is a receive and a transmit AF_XDP socket bound to one (interface,
// queue), with their own UMEM and a bufring.FramePool over it.
//
// Frame ownership:
//   - Receive hands the caller the frames of the descriptors it returns. The
//     caller gives each back exactly once, with Release, or by passing the
//     descriptor (possibly rewritten in place) to Transmit.
//   - Alloc hands the caller free frames to build packets in. The caller
//     gives each back with Transmit or Release.
//   - Frames accepted by Transmit belong to the port; they return to the
//     pool when the kernel reports their completion.
//   - Frame views (Frame) are valid while the caller owns the frame and
//     until Close.
//
// Frame budget: the port lends the kernel at most Config.FillFrames frames
// for reception (on the fill ring, or holding received packets Receive has
// not taken), because those return only as packets arrive. Frames beyond
// the budget that Release gives back go to the pool, where Alloc finds
// them. So reception can never take every frame: Alloc comes up short only
// while frames are in flight on the TX side or held by callers, which
// completions and releases end; short Allocs are counted
// (Stats.TxAllocShort).
//
// Concurrency: the receive side (Receive, Release) and the transmit side
// (Alloc, Transmit, Complete) each take their own uncontended-in-steady-state
// mutex once per call, so one goroutine can receive while others transmit.
// Wait, Wake and Stats may be called from any goroutine. Close waits for the
// calls in progress, but frame views handed out earlier become invalid: stop
// the goroutines that use the port before closing it.
type Port struct {
	cfg       Config
	umem      []byte // immutable until Close unmaps it
	pool      *bufring.FramePool
	frameMask uint64 // FrameSize-1
	zeroCopy  bool
	// txMeta is the TX metadata the UMEM reserves before each packet sent
	// (txMetadataLen, or 0 without): Alloc's frames start that far in.
	txMeta   uint64
	fallback string
	fd       int // the socket, for statistics and kicks

	// pollFile is a non-blocking duplicate of fd registered with the Go
	// runtime's poller: Wait parks its goroutine there (no OS thread held
	// in poll(2)), and Wake and Close interrupt it through its read
	// deadline. release is its one closer, after every Wait has returned
	// and before the socket itself closes; the socket outlives it.
	pollFile *os.File
	pollConn syscall.RawConn
	// deviceCheck is defaultDeviceCheck; a test stretches it before any
	// Wait so that a lost wakeup hangs rather than stalls for a slice.
	deviceCheck time.Duration
	// wake is set by Wake (and Close) and consumed by Wait.
	wake atomic.Bool

	closed atomic.Bool
	// life is held shared by Wait, Wake and Stats while they use the file
	// descriptors, and exclusively by Close while it releases them.
	life sync.RWMutex

	// rxMu guards the fill and RX rings, rxCache and rxLent.
	rxMu    sync.Mutex
	fill    *addrRing
	rx      *descRing
	rxCache *bufring.Cache
	rxAddrs [batch]uint64
	// rxLent counts the frames the kernel holds for reception: posted on
	// the fill ring and not yet taken off the RX ring by Receive. It never
	// exceeds cfg.FillFrames.
	rxLent uint32

	// txMu guards the TX and completion rings, txCache and the TX retry.
	txMu    sync.Mutex
	tx      *descRing
	comp    *addrRing
	txCache *bufring.Cache
	txAddrs [batch]uint64
	// txRetry kicks again, txRetryDelay later, when a kick left
	// descriptors on the TX ring without progress (completion ring full,
	// device busy, link down): the transmit socket is never polled, so
	// nothing else would send them before the next Transmit. The delay
	// doubles while kicks stay stuck.
	txRetry      *time.Timer
	txRetryArmed bool
	txRetryDelay time.Duration
	// txWait wakes the goroutines in WaitTX when frames come back.
	txWait txWaiters

	// sock owns the UMEM and has the fill, RX and completion rings; txSock
	// shares its UMEM and has the TX ring, so that polling sock never
	// transmits (see doc.go). Both are owned by Close; the rings above
	// point into them.
	sock, txSock *xsk
	ctr          counters
}

// Open creates the UMEM and the sockets for cfg, binds them, fills the fill
// ring and, if cfg.Map is set, puts the receive socket in the XSKMAP. It
// must run in the network namespace of the interface (the calling thread's
// namespace, e.g. inside lab.NS.Do); the port works from any thread
// afterwards.
func Open(cfg Config) (_ *Port, err error) {
	if err := cfg.normalize(unix.Getpagesize()); err != nil {
		return nil, err
	}
	umem, err := mapUMEM(cfg.Frames * cfg.FrameSize)
	if err != nil {
		return nil, err
	}
	p := &Port{cfg: cfg, umem: umem, frameMask: uint64(cfg.FrameSize - 1), fd: -1, deviceCheck: defaultDeviceCheck}
	if !cfg.NoTxChecksum {
		p.txMeta = txMetadataLen
	}
	defer func() {
		if err != nil {
			p.release()
		}
	}()
	p.pool, err = bufring.NewFramePool(bufring.FrameConfig{
		Frames: cfg.Frames, FrameSize: cfg.FrameSize, Reserve: cfg.RXReserve,
		CacheSize: cfg.CacheSize, Region: umem,
	})
	if err != nil {
		return nil, fmt.Errorf("nic: frame pool: %w", err)
	}
	p.rxCache = p.pool.NewCache(fmt.Sprintf("nic rx %d/%d", cfg.Ifindex, cfg.Queue))
	p.txCache = p.pool.NewCache(fmt.Sprintf("nic tx %d/%d", cfg.Ifindex, cfg.Queue))

	if err := p.bind(); err != nil {
		return nil, err
	}
	p.fd = p.sock.fd
	p.fill, p.rx, p.tx, p.comp = &p.sock.fill, &p.sock.rx, &p.txSock.tx, &p.sock.comp
	// In copy mode each sendto transmits at most a small budget (32 by
	// default) and returns EAGAIN; let one kick take a whole TX ring. Older
	// kernels lack the option, which only costs extra kicks.
	_ = unix.SetsockoptInt(p.txSock.fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, cfg.TXSize)

	if err := p.openPoll(); err != nil {
		return nil, err
	}
	p.rxMu.Lock()
	err = p.refillLocked(true)
	p.rxMu.Unlock()
	if err != nil {
		return nil, err
	}
	if cfg.Map != nil {
		if err := cfg.Map.SetSocket(cfg.Queue, p.fd); err != nil {
			return nil, fmt.Errorf("nic: xskmap set queue %d: %w", cfg.Queue, err)
		}
	}
	return p, nil
}

// bind creates and binds the socket, falling back from zero-copy to copy
// mode as cfg.ZeroCopy allows and retrying EBUSY within cfg.BindRetry. Each
// attempt uses a fresh socket so a failed bind leaves nothing behind.
func (p *Port) bind() error {
	cfg := &p.cfg
	var flags uint16
	if !cfg.NoNeedWakeup {
		flags |= unix.XDP_USE_NEED_WAKEUP
	}
	sizes := ringSizes{fill: uint32(cfg.FillSize), comp: uint32(cfg.CompSize), rx: uint32(cfg.RXSize)}
	try := func(mode uint16) (*xsk, error) {
		deadline := time.Now().Add(cfg.BindRetry)
		backoff := time.Millisecond
		for attempt := 1; ; attempt++ {
			s, err := newXSK(p.umem, uint32(cfg.FrameSize), uint32(p.txMeta), sizes)
			if err != nil && p.txMeta != 0 && errors.Is(err, unix.EINVAL) {
				// Kernels before 6.11 know no TX metadata: without it,
				// checksums are computed before transmission.
				cfg.Logger.Info("nic: no AF_XDP TX metadata, checksum offload off", "ifindex", cfg.Ifindex, "queue", cfg.Queue, "reason", err)
				p.txMeta = 0
				s, err = newXSK(p.umem, uint32(cfg.FrameSize), 0, sizes)
			}
			if err != nil {
				return nil, err
			}
			err = s.bind(cfg.Ifindex, cfg.Queue, flags|mode)
			if err == nil {
				return s, nil
			}
			s.close()
			if !errors.Is(err, unix.EBUSY) || time.Now().Add(backoff).After(deadline) {
				return nil, fmt.Errorf("nic: bind ifindex %d queue %d (attempt %d): %w", cfg.Ifindex, cfg.Queue, attempt, err)
			}
			cfg.Logger.Debug("nic: queue busy, retrying bind", "ifindex", cfg.Ifindex, "queue", cfg.Queue, "attempt", attempt)
			p.ctr.bindRetries.Add(1)
			time.Sleep(backoff)
			backoff = min(2*backoff, 100*time.Millisecond)
		}
	}

	var s *xsk
	var err error
	switch cfg.ZeroCopy {
	case ZeroCopyOff:
		s, err = try(unix.XDP_COPY)
	case ZeroCopyForce:
		if s, err = try(unix.XDP_ZEROCOPY); errors.Is(err, unix.EOPNOTSUPP) {
			err = fmt.Errorf("%w (zero-copy: %w)", err, ErrNotSupported)
		}
	case ZeroCopyAuto:
		if s, err = try(unix.XDP_ZEROCOPY); err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENODEV) {
			zcErr := err
			// Report the fallback only if copy mode works: a bad queue
			// fails both ways, and then copy mode's error is the one to see.
			if s, err = try(unix.XDP_COPY); err == nil {
				p.fallback = zcErr.Error()
				p.ctr.zeroCopyFallback.Add(1)
				cfg.Logger.Info("nic: zero-copy unavailable, using copy mode", "ifindex", cfg.Ifindex, "queue", cfg.Queue, "reason", zcErr)
			}
		}
	}
	if err != nil {
		return err
	}
	if p.zeroCopy, err = s.zeroCopy(); err != nil {
		s.close()
		return err
	}
	t, err := newXSK(nil, 0, 0, ringSizes{tx: uint32(cfg.TXSize)})
	if err == nil {
		if err = t.bindShared(cfg.Ifindex, cfg.Queue, s); err != nil {
			t.close()
			err = fmt.Errorf("nic: bind TX socket to ifindex %d queue %d: %w", cfg.Ifindex, cfg.Queue, err)
		}
	}
	if err != nil {
		s.close()
		return err
	}
	p.sock, p.txSock = s, t
	return nil
}

// Receive moves up to len(descs) received descriptors into descs and returns
// how many. It never blocks (see Wait). The frames named by the returned
// descriptors belong to the caller until Release or Transmit. Receive also
// tops up the fill ring from the pool, kicking the driver if it asked for it.
func (p *Port) Receive(descs []Desc) (int, error) {
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	if p.closed.Load() {
		return 0, ErrClosed
	}
	r := p.rx
	n := r.consPeek(uint32(min(len(descs), 1<<31)))
	var bytes uint64
	for i := range n {
		d := r.slots[(r.local+i)&r.mask]
		descs[i] = d
		bytes += uint64(d.Len)
	}
	if n > 0 {
		r.local += n
		r.publishConsumer()
		p.rxLent -= n
		p.ctr.rxPackets.Add(uint64(n))
		p.ctr.rxBytes.Add(bytes)
	}
	return int(n), p.refillLocked(false)
}

// fillRoomLocked returns how many of want frames may go on the fill ring
// now: as many as it has free slots and the budget (cfg.FillFrames) allows.
// Called with rxMu held.
func (p *Port) fillRoomLocked(want uint32) uint32 {
	return p.fill.prodReserve(min(want, uint32(p.cfg.FillFrames)-p.rxLent))
}

// refillLocked tops up the fill ring from the pool (RX class: it may take the
// RX reserve) to the fill budget: always if full is set, otherwise only once
// less than three quarters of the budget is lent. Frames the caller releases
// right after Receive go straight back to the fill ring, so refilling at
// every Receive would send them through the pool for nothing; Wait tops the
// ring up completely before it sleeps, when the time it can absorb matters
// most. Called with rxMu held.
func (p *Port) refillLocked(full bool) error {
	f := p.fill
	limit := min(f.size, uint32(p.cfg.FillFrames))
	free := p.fillRoomLocked(limit)
	if free == 0 || !full && free <= limit/4 {
		return nil
	}
	var filled uint32
	for filled < free {
		got := p.rxCache.GetRX(p.rxAddrs[:min(free-filled, batch)])
		if got == 0 {
			p.ctr.fillPoolEmpty.Add(1)
			break
		}
		for i := range got {
			f.slots[(f.local+uint32(i))&f.mask] = p.rxAddrs[i]
		}
		f.local += uint32(got)
		filled += uint32(got)
	}
	if filled == 0 {
		return nil
	}
	p.rxLent += filled
	f.publishProducer()
	return p.kickFillLocked()
}

// kickFillLocked wakes the driver if it stopped for want of fill entries.
// Copy mode never asks; zero-copy drivers with need_wakeup do.
func (p *Port) kickFillLocked() error {
	if p.cfg.NoNeedWakeup || !p.fill.needWakeup() {
		return nil
	}
	p.ctr.fillKicks.Add(1)
	switch errno := p.sock.kickRX(); errno {
	case 0, unix.EAGAIN, unix.EINTR, unix.EBUSY:
		return nil
	case unix.ENETDOWN:
		return fmt.Errorf("nic: rx wakeup: %w: %w", ErrLinkDown, errno)
	default:
		return fmt.Errorf("nic: rx wakeup: %w", errno)
	}
}

// Release gives frames back to the port: straight into the fill ring while
// it has room and the fill budget allows, into the pool otherwise. descs may
// come from Receive or Alloc; each frame must be released once. Release
// after Close drops the frames.
func (p *Port) Release(descs []Desc) {
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	if p.closed.Load() {
		return
	}
	f := p.fill
	umemLen := uint64(len(p.umem))
	room := p.fillRoomLocked(uint32(min(len(descs), 1<<31)))
	var filled uint32
	toPool := false
	for i := 0; i < len(descs); {
		n := 0
		for ; n < batch && i < len(descs); i++ {
			a := descs[i].Addr
			if a >= umemLen {
				// A descriptor that names no frame of ours: count it
				// rather than corrupt the pool.
				p.ctr.invalidRelease.Add(1)
				continue
			}
			p.rxAddrs[n] = a &^ p.frameMask
			n++
		}
		k := min(uint32(n), room-filled)
		for j := range k {
			f.slots[(f.local+j)&f.mask] = p.rxAddrs[j]
		}
		f.local += k
		filled += k
		if int(k) < n {
			p.rxCache.PutBatch(p.rxAddrs[k:n])
			toPool = true
		}
	}
	if toPool && p.txWait.n.Load() != 0 {
		// A sender waits for frames: hand it these rather than keep
		// them in the receive side's cache, where Alloc cannot reach.
		p.rxCache.Flush()
		p.txWait.notify()
	}
	if filled > 0 {
		p.rxLent += filled
		f.publishProducer()
		// A failed wakeup is retried by the next refill, here or in Wait.
		_ = p.kickFillLocked()
	}
}

// Alloc fills descs with free frames to build packets in and returns how
// many it got; fewer than len(descs) (counted in Stats.TxAllocShort) means
// the pool, outside what reception may hold (see Port), is short until
// transmissions complete or callers release frames. Each Desc starts
// TxHeadroom bytes into its frame and has Len set to the rest of it: write
// the packet into Frame(d), set d.Len to its length, and pass d to
// Transmit, or give it back with Release.
func (p *Port) Alloc(descs []Desc) int {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed.Load() {
		return 0
	}
	p.reapLocked()
	total := 0
	for total < len(descs) {
		got := p.txCache.GetBatch(p.txAddrs[:min(len(descs)-total, batch)])
		if got == 0 {
			break
		}
		for i, a := range p.txAddrs[:got] {
			descs[total+i] = Desc{Addr: a + p.txMeta, Len: uint32(uint64(p.cfg.FrameSize) - p.txMeta)}
		}
		total += got
	}
	if total < len(descs) {
		p.ctr.txAllocShort.Add(1)
	}
	return total
}

// Transmit places descriptors on the TX ring and, when the kernel asks for
// it (need_wakeup), kicks it once. It returns how many it placed; the port
// owns those frames from then on. Descriptors not placed stay the caller's:
// the error is then ErrRingFull, or ErrBadDesc for a packet that starts
// less than TxHeadroom bytes into its frame (the kernel would drop it and
// never complete the frame), unless a kick failed. A kick that finds the
// link down returns an error wrapping ErrLinkDown and ENETDOWN; the placed
// descriptors leave once the link is back: while a kick leaves descriptors
// on the ring, the port kicks again on its own, backing off from 50µs to
// 10ms (Stats.TxKickRetries). Transmit(nil) only reaps completions and
// kicks out what is still on the ring.
func (p *Port) Transmit(descs []Desc) (int, error) {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed.Load() {
		return 0, ErrClosed
	}
	p.reapLocked()
	t := p.tx
	n := t.prodReserve(uint32(min(len(descs), 1<<31)))
	var bytes uint64
	var bad error
	for i := range n {
		d := descs[i]
		if d.Addr&p.frameMask < p.txMeta {
			bad = fmt.Errorf("nic: transmit: packet %d bytes into its frame, want %d: %w", d.Addr&p.frameMask, p.txMeta, ErrBadDesc)
			n = i
			break
		}
		t.slots[(t.local+i)&t.mask] = d
		bytes += uint64(d.Len)
	}
	if n > 0 {
		t.local += n
		t.publishProducer()
		p.ctr.txPackets.Add(uint64(n))
		p.ctr.txBytes.Add(bytes)
	}
	err := p.kickTXLocked()
	if err == nil && bad != nil {
		err = bad
	} else if err == nil && int(n) < len(descs) {
		p.ctr.txRingFull.Add(uint64(len(descs) - int(n)))
		err = ErrRingFull
	}
	return int(n), err
}

// kickTXLocked kicks the kernel if descriptors wait on the TX ring and it
// asked for a wakeup. In copy mode the kernel sends a budget per kick and
// returns EAGAIN when more are left, so kick again while that makes progress.
func (p *Port) kickTXLocked() error {
	t := p.tx
	for {
		if t.prodOutstanding() == 0 || (!p.cfg.NoNeedWakeup && !t.needWakeup()) {
			return nil
		}
		before := t.cached
		p.ctr.txKicks.Add(1)
		switch errno := p.txSock.kickTX(); errno {
		case 0:
			p.txRetryDelay = 0
			return nil
		case unix.EAGAIN, unix.EBUSY, unix.EINTR:
			// The kernel stopped early: its budget ran out, the completion
			// ring is full, or the device queue is busy. Kick again now
			// only if it moved, after freeing completion slots.
			p.reapLocked()
			if t.loadConsumer() == before {
				p.ctr.txKickBusy.Add(1)
				p.armTXRetryLocked()
				return nil
			}
		case unix.ENETDOWN:
			p.ctr.linkDown.Add(1)
			p.armTXRetryLocked()
			return fmt.Errorf("nic: tx: %w: %w", ErrLinkDown, errno)
		default:
			p.ctr.txKickErrors.Add(1)
			return fmt.Errorf("nic: tx kick: %w", errno)
		}
	}
}

const (
	txRetryFirst = 50 * time.Microsecond
	txRetryMax   = 10 * time.Millisecond
)

// armTXRetryLocked makes txRetry kick the TX ring later, unless it is
// armed already. Called with txMu held.
func (p *Port) armTXRetryLocked() {
	if p.txRetryArmed {
		return
	}
	p.txRetryArmed = true
	p.txRetryDelay = min(max(2*p.txRetryDelay, txRetryFirst), txRetryMax)
	if p.txRetry == nil {
		p.txRetry = time.AfterFunc(p.txRetryDelay, p.retryTX)
		return
	}
	p.txRetry.Reset(p.txRetryDelay)
}

// retryTX is txRetry's function: it kicks the TX ring, which arms it again
// while the ring stays stuck. Kick errors are counted in Stats.
func (p *Port) retryTX() {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	p.txRetryArmed = false
	if p.closed.Load() {
		return
	}
	p.ctr.txKickRetries.Add(1)
	p.reapLocked()
	_ = p.kickTXLocked()
}

// Complete reaps the completion ring, returning transmitted frames to the
// pool, and reports how many it reaped. Transmit and Alloc do this already.
func (p *Port) Complete() int {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed.Load() {
		return 0
	}
	return p.reapLocked()
}

func (p *Port) reapLocked() int {
	c := p.comp
	total := 0
	for {
		n := c.consPeek(batch)
		if n == 0 {
			break
		}
		for i := range n {
			p.txAddrs[i] = c.slots[(c.local+i)&c.mask] &^ p.frameMask
		}
		c.local += n
		c.publishConsumer()
		p.txCache.PutBatch(p.txAddrs[:n])
		total += int(n)
	}
	if total > 0 {
		p.ctr.txCompleted.Add(uint64(total))
		p.txWait.notify()
	}
	return total
}

// Frame returns the bytes of the frame d names: d.Len bytes from d.Addr,
// with a capacity that ends at the frame's end. The view is valid while the
// caller owns the frame (see Port) and never after Close. A descriptor that
// does not fit in one frame of this port gives nil.
func (p *Port) Frame(d Desc) []byte {
	end := (d.Addr &^ p.frameMask) + uint64(p.cfg.FrameSize)
	if d.Addr+uint64(d.Len) > end || end > uint64(len(p.umem)) {
		return nil
	}
	return p.umem[d.Addr : d.Addr+uint64(d.Len) : end]
}

// Wait blocks until the RX ring holds descriptors, Wake is called, timeout
// passes (negative: no limit) or the port is closed. With Config.BusyPoll it
// first spins on the RX ring for that long, then parks the goroutine in the
// Go runtime's poller (no OS thread is held while it sleeps). It reports
// whether the RX ring is non-empty; spurious returns are possible, so loop
// on Receive. Concurrent Waits park one at a time; Wake ends the one parked.
func (p *Port) Wait(timeout time.Duration) (bool, error) {
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed.Load() {
		return false, ErrClosed
	}
	if p.rxReady() {
		return true, nil
	}
	p.rxMu.Lock()
	err := p.refillLocked(true)
	p.rxMu.Unlock()
	if err != nil {
		return false, err
	}
	if spin := p.cfg.BusyPoll; spin > 0 {
		if timeout >= 0 {
			spin = min(spin, timeout)
		}
		start := time.Now()
		for i := 0; ; i++ {
			if p.rxReady() {
				p.ctr.busyPollHits.Add(1)
				return true, nil
			}
			// Check the clock only every so often: it costs more than
			// the two loads above.
			if i&63 == 63 && time.Since(start) >= spin {
				break
			}
		}
		if timeout >= 0 {
			timeout -= time.Since(start)
			timeout = max(timeout, 0)
		}
	}
	p.ctr.pollSleeps.Add(1)
	return p.sleep(timeout)
}

// defaultDeviceCheck bounds how long Wait sleeps before it checks whether
// the socket's device went away (Port.deviceCheck).
const defaultDeviceCheck = time.Second

// rxReady reports whether the RX ring holds descriptors. It reads only the
// shared words, so it needs no lock.
func (p *Port) rxReady() bool {
	return ringAvail(p.rx.loadProducer(), p.rx.loadConsumer()) != 0
}

// socketError reads and clears the socket's pending error (SO_ERROR), which
// the kernel sets to ENETDOWN when the device goes away.
func (p *Port) socketError() error {
	errno, err := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("nic: SO_ERROR: %w", err)
	}
	return p.errnoError(unix.Errno(errno))
}

func (p *Port) errnoError(errno unix.Errno) error {
	switch errno {
	case 0:
		return errors.New("nic: socket: poll reported an error, SO_ERROR none")
	case unix.ENETDOWN:
		return fmt.Errorf("nic: socket: %w: %w", ErrLinkDown, errno)
	}
	return fmt.Errorf("nic: socket: %w", errno)
}

// Wake makes a Wait in progress (or the next one) return at once. It is
// safe from any goroutine, e.g. a transmitter telling the port's worker that
// work is queued.
func (p *Port) Wake() {
	p.life.RLock()
	defer p.life.RUnlock()
	if !p.closed.Load() {
		p.signal()
	}
}

// Close removes the socket from the XSKMAP, releases the socket and its
// rings, closes the pool and unmaps the UMEM. It waits for calls in progress
// and wakes a Wait. Close is idempotent; later calls return nil.
func (p *Port) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	p.signal() // end a Wait parked in the poller so Close can take life
	p.txWait.notify()
	p.life.Lock()
	defer p.life.Unlock()
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.txRetry != nil {
		p.txRetry.Stop()
	}
	var errs []error
	if p.cfg.Map != nil {
		if err := p.cfg.Map.DeleteSocket(p.cfg.Queue); err != nil {
			errs = append(errs, fmt.Errorf("nic: xskmap delete queue %d: %w", p.cfg.Queue, err))
		}
	}
	errs = append(errs, p.release())
	return errors.Join(errs...)
}

// release frees what Open built, in the order the kernel needs: the socket
// (rings unmapped, descriptor closed) before the UMEM it pins.
func (p *Port) release() error {
	var errs []error
	if p.pollFile != nil {
		// Only a duplicate: the socket stays open until sock.close.
		errs = append(errs, p.pollFile.Close())
		p.pollFile, p.pollConn = nil, nil
	}
	if p.txSock != nil {
		errs = append(errs, p.txSock.close())
		p.txSock = nil
	}
	if p.sock != nil {
		errs = append(errs, p.sock.close())
		p.sock = nil
	}
	if p.pool != nil {
		p.rxCache.Close()
		p.txCache.Close()
		errs = append(errs, p.pool.Close())
	}
	if p.umem != nil {
		if err := unix.Munmap(p.umem); err != nil {
			errs = append(errs, fmt.Errorf("nic: munmap umem: %w", err))
		}
	}
	return errors.Join(errs...)
}

// FD returns the receive socket's file descriptor (e.g. for an XSKMAP the caller
// manages itself). It stays owned by the port, and is non-blocking (Wait
// polls a duplicate of it through the Go runtime).
func (p *Port) FD() int { return p.fd }

// Ifindex returns the interface index the port is bound to.
func (p *Port) Ifindex() int { return p.cfg.Ifindex }

// Queue returns the queue the port is bound to.
func (p *Port) Queue() int { return p.cfg.Queue }

// ZeroCopy reports whether the socket runs in zero-copy mode.
func (p *Port) ZeroCopy() bool { return p.zeroCopy }

// TxHeadroom is how far into its frame a packet to transmit must start: the
// room for its TX metadata. Alloc's descriptors start there; received ones
// start further in.
func (p *Port) TxHeadroom() int { return int(p.txMeta) }

// FallbackReason says why ZeroCopyAuto fell back to copy mode, or "" if it
// did not.
func (p *Port) FallbackReason() string { return p.fallback }

// FrameSize returns the UMEM frame size: the most Alloc'ed frames hold.
func (p *Port) FrameSize() int { return p.cfg.FrameSize }

// Pool returns the port's frame pool, for its statistics and waiters.
func (p *Port) Pool() *bufring.FramePool { return p.pool }
