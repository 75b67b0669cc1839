package stacktest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/stack"
)

// MemConfig sizes the ports of a MemWire. Zero fields take the defaults.
type MemConfig struct {
	Frames    int // UMEM frames per port (default 16384, as nic.Port)
	FrameSize int // default 2048
	RXRing    int // RX ring slots (default 4096, as nic.Port): frames beyond are dropped
	TXRing    int // most descriptors one Transmit takes (default 2048)
	// TxChecksum offers checksum offload (TxChecksum): Transmit finishes
	// requested checksums, as a NIC does, before the peer sees the frame.
	TxChecksum bool
}

// MemWire is two in-memory AF_XDP ports joined back to back: what one
// transmits, the other receives, copied between their UMEMs as a veth in
// copy mode does. They follow nic.Port's frame-ownership rules and have
// bufring frame pools, so stack.Endpoint runs over them unchanged, without
// privileges. No goroutine is involved: Transmit delivers into the peer's RX
// ring and completes at once.
type MemWire struct {
	A, B *MemPort
	down atomic.Bool
}

// NewMemWire returns two joined ports.
func NewMemWire(cfg MemConfig) (*MemWire, error) {
	if cfg.Frames == 0 {
		cfg.Frames = 16384
	}
	if cfg.FrameSize == 0 {
		cfg.FrameSize = 2048
	}
	if cfg.RXRing == 0 {
		cfg.RXRing = 4096
	}
	if cfg.TXRing == 0 {
		cfg.TXRing = 2048
	}
	w := &MemWire{}
	var err error
	if w.A, err = newMemPort(w, "a", cfg); err != nil {
		return nil, err
	}
	if w.B, err = newMemPort(w, "b", cfg); err != nil {
		return nil, err
	}
	w.A.peer, w.B.peer = w.B, w.A
	return w, nil
}

// SetUp connects or cuts the wire. While cut, Transmit reports the link down
// (nic.ErrLinkDown) and sends nothing, as a veth whose peer is down does.
func (w *MemWire) SetUp(up bool) { w.down.Store(!up) }

// MemPort is one end of a MemWire. It implements stack.Port.
type MemPort struct {
	name   string
	cfg    MemConfig
	wire   *MemWire
	peer   *MemPort
	region []byte
	pool   *bufring.FramePool
	notify chan struct{} // Wake and arrivals; capacity 1
	freed  chan struct{} // frames back in the pool (Release, Transmit); capacity 1
	done   chan struct{} // closed by Close

	// Transmit stalls (accepts nothing, as with a TX ring the kernel does
	// not drain) while stalled is set.
	stalled atomic.Bool

	mu sync.Mutex
	// +checklocks:mu
	cache *bufring.Cache
	// +checklocks:mu
	rx []nic.Desc
	// +checklocks:mu
	closed bool
	// +checklocks:mu
	st nic.Stats
	// +checklocks:mu
	checksums uint64

	// csum holds each frame's TxChecksum request (start, offset): written
	// by the frame's owner, read by Transmit once the frame is handed over.
	csum [][2]int
}

var _ stack.Port = (*MemPort)(nil)

func newMemPort(w *MemWire, name string, cfg MemConfig) (*MemPort, error) {
	region := make([]byte, cfg.Frames*cfg.FrameSize)
	pool, err := bufring.NewFramePool(bufring.FrameConfig{
		Frames: cfg.Frames, FrameSize: cfg.FrameSize, Reserve: cfg.Frames / 4, Region: region,
	})
	if err != nil {
		return nil, fmt.Errorf("stacktest: mem port %s: %w", name, err)
	}
	return &MemPort{
		name: name, cfg: cfg, wire: w, region: region, pool: pool,
		cache:  pool.NewCache("memport " + name),
		notify: make(chan struct{}, 1), freed: make(chan struct{}, 1), done: make(chan struct{}),
		csum: make([][2]int, cfg.Frames),
	}, nil
}

// Pool returns the port's frame pool (for conservation checks).
func (p *MemPort) Pool() *bufring.FramePool { return p.pool }

// Stall makes Transmit accept nothing (true) or work again (false).
func (p *MemPort) Stall(on bool) { p.stalled.Store(on) }

// Receive implements stack.Port.
func (p *MemPort) Receive(descs []nic.Desc) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, nic.ErrClosed
	}
	n := copy(descs, p.rx)
	p.rx = append(p.rx[:0], p.rx[n:]...)
	p.st.RxPackets += uint64(n)
	return n, nil
}

// Release implements stack.Port.
func (p *MemPort) Release(descs []nic.Desc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range descs {
		p.cache.Put(d.Addr &^ uint64(p.cfg.FrameSize-1))
	}
	p.signalFreed()
}

// signalFreed wakes a WaitTX: frames came back.
func (p *MemPort) signalFreed() {
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// Alloc implements stack.Port.
func (p *MemPort) Alloc(descs []nic.Desc) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0
	}
	for i := range descs {
		a, ok := p.cache.Get()
		if !ok {
			p.st.TxAllocShort++
			return i
		}
		descs[i] = nic.Desc{Addr: a, Len: uint32(p.cfg.FrameSize)}
	}
	return len(descs)
}

// Transmit implements stack.Port: it copies each frame into the peer's RX
// ring (dropping it, counted on the peer, when that ring or the peer's pool
// is full) and completes it at once.
func (p *MemPort) Transmit(descs []nic.Desc) (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, nic.ErrClosed
	}
	p.mu.Unlock()
	if p.wire.down.Load() {
		return 0, fmt.Errorf("stacktest: %w", nic.ErrLinkDown)
	}
	if p.stalled.Load() {
		if len(descs) == 0 {
			return 0, nil
		}
		return 0, nic.ErrRingFull
	}
	n := min(len(descs), p.cfg.TXRing)
	var bytes, checksums uint64
	for _, d := range descs[:n] {
		f := p.Frame(d)
		if d.Options&unix.XDP_TX_METADATA != 0 {
			req := p.csum[d.Addr/uint64(p.cfg.FrameSize)]
			stack.FinishChecksum(f[req[0]:], req[1])
			checksums++
		}
		p.peer.inject(f)
		bytes += uint64(d.Len)
	}
	p.mu.Lock()
	for _, d := range descs[:n] {
		p.cache.Put(d.Addr &^ uint64(p.cfg.FrameSize-1))
	}
	p.checksums += checksums
	p.st.TxPackets += uint64(n)
	p.st.TxBytes += bytes
	p.st.TxCompleted += uint64(n)
	p.mu.Unlock()
	if n > 0 {
		p.signalFreed()
	}
	if n < len(descs) {
		return n, nic.ErrRingFull
	}
	return n, nil
}

// inject puts a copy of frame on p's RX ring.
func (p *MemPort) inject(frame []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if len(p.rx) >= p.cfg.RXRing {
		p.st.Kernel.RxRingFull++
		return
	}
	var a [1]uint64
	if p.cache.GetRX(a[:]) == 0 {
		p.st.Kernel.RxFillRingEmptyDescs++
		return
	}
	copy(p.region[a[0]:a[0]+uint64(p.cfg.FrameSize)], frame)
	p.rx = append(p.rx, nic.Desc{Addr: a[0], Len: uint32(len(frame))})
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Inject puts a copy of frame on p's RX ring as if it had arrived from the
// wire (for malformed-frame tests). Frames longer than a UMEM frame are cut.
func (p *MemPort) Inject(frame []byte) {
	p.inject(frame[:min(len(frame), p.cfg.FrameSize)])
}

// TxChecksum implements stack.Port: with MemConfig.TxChecksum, Transmit
// finishes the checksum.
func (p *MemPort) TxChecksum(d *nic.Desc, start, offset int) bool {
	if !p.cfg.TxChecksum || start < 0 || offset < 0 || start+offset+2 > int(d.Len) {
		return false
	}
	p.csum[d.Addr/uint64(p.cfg.FrameSize)] = [2]int{start, offset}
	d.Options |= unix.XDP_TX_METADATA
	return true
}

// ChecksumsFinished reports how many checksums Transmit finished for
// TxChecksum requests.
func (p *MemPort) ChecksumsFinished() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checksums
}

// TxHeadroom implements stack.Port: the port keeps no TX metadata in
// frames.
func (p *MemPort) TxHeadroom() int { return 0 }

// Complete implements stack.Port; transmissions complete inside Transmit.
func (p *MemPort) Complete() int { return 0 }

// WaitTX implements stack.Port: it sleeps until Release or Transmit gives
// frames back, timeout passes or the port closes. Calls are counted in
// Stats().TxWaits, so tests can tell a sleep from a busy loop.
func (p *MemPort) WaitTX(timeout time.Duration) bool {
	if timeout <= 0 {
		return false
	}
	p.mu.Lock()
	p.st.TxWaits++
	p.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.freed:
		return true
	case <-p.done:
	case <-t.C:
	}
	return false
}

// Frame implements stack.Port.
func (p *MemPort) Frame(d nic.Desc) []byte {
	end := d.Addr&^uint64(p.cfg.FrameSize-1) + uint64(p.cfg.FrameSize)
	return p.region[d.Addr : d.Addr+uint64(d.Len) : end]
}

// Wait implements stack.Port.
func (p *MemPort) Wait(timeout time.Duration) (bool, error) {
	p.mu.Lock()
	ready, closed := len(p.rx) > 0, p.closed
	p.mu.Unlock()
	if closed {
		return false, nic.ErrClosed
	}
	if ready {
		return true, nil
	}
	var tc <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-p.notify:
	case <-p.done:
		return false, nic.ErrClosed
	case <-tc:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.rx) > 0, nil
}

// Wake implements stack.Port.
func (p *MemPort) Wake() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// FrameSize implements stack.Port.
func (p *MemPort) FrameSize() int { return p.cfg.FrameSize }

// Stats implements stack.Port.
func (p *MemPort) Stats() (nic.Stats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.st, nic.ErrClosed
	}
	return p.st, nil
}

// Close implements stack.Port: frames still on the RX ring go back to the
// pool, which is closed.
func (p *MemPort) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	close(p.done)
	for _, d := range p.rx {
		p.cache.Put(d.Addr)
	}
	p.rx = nil
	p.cache.Flush()
	return p.pool.Close()
}
