package stack

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xdpnet/xdpnet/nic"
)

// Port is what Endpoint needs of one AF_XDP queue. *nic.Port implements it;
// stacktest.NewMemWire builds in-memory ports for unprivileged tests. The
// frame ownership rules are nic.Port's.
type Port interface {
	Receive(descs []nic.Desc) (int, error)
	Release(descs []nic.Desc)
	Alloc(descs []nic.Desc) int
	Transmit(descs []nic.Desc) (int, error)
	Complete() int
	WaitTX(timeout time.Duration) bool
	Frame(d nic.Desc) []byte
	TxChecksum(d *nic.Desc, start, offset int) bool
	Wait(timeout time.Duration) (bool, error)
	Wake()
	FrameSize() int
	TxHeadroom() int
	Stats() (nic.Stats, error)
	Close() error
}

var _ Port = (*nic.Port)(nil)

// EndpointOptions configure an Endpoint. Zero fields take the defaults listed.
type EndpointOptions struct {
	// MAC is the link address: the interface's (required).
	MAC net.HardwareAddr
	// MTU is the IP MTU (default 1500). MTU+14 must fit in a UMEM frame.
	MTU uint32

	// DisableGRO delivers every received TCP segment on its own instead of
	// coalescing in-order segments of a flow within a receive batch.
	DisableGRO bool
	// DisableGSO makes TCP build MTU-sized segments instead of segments of
	// up to GSOMaxSize that the endpoint cuts into frames on send.
	DisableGSO bool
	// GSOMaxSize is the largest segment TCP hands down (default 65536).
	GSOMaxSize uint32

	// TrustRXChecksum skips checksum verification on receive: set it only
	// when the NIC verified them (or, in a lab, to accept a kernel peer's
	// unfinished checksums; see doc.go).
	TrustRXChecksum bool
	// Promiscuous accepts frames for any destination MAC; by default frames
	// for another unicast MAC are dropped and counted, as a NIC does.
	Promiscuous bool

	// RXBatch is how many frames a queue takes from its RX ring at a time
	// (default 64).
	RXBatch int
	// TXWait bounds how long a send waits for free frames or TX ring room
	// before it drops the rest of its batch (counted); TCP then recovers
	// the segments by retransmission. The send sleeps in the port's WaitTX
	// meanwhile, woken when frames come back. Default 2ms.
	TXWait time.Duration
	// DrainTimeout bounds how long Close waits for the kernel to complete
	// transmissions (default 1s).
	DrainTimeout time.Duration

	// DisableUDPFastPath sends and receives connected and address-bound
	// UDP sockets' datagrams through the netstack (a packet buffer,
	// routing and the qdisc per datagram) instead of straight between
	// frames and the socket (see the package doc).
	DisableUDPFastPath bool

	// Capture, if set, records every frame received and sent.
	Capture *Capture
}

const (
	defaultRXBatch      = 64
	defaultTXWait       = 2 * time.Millisecond
	defaultDrainTimeout = time.Second
	defaultGSOMaxSize   = 1 << 16
)

// ErrEndpointClosed is returned for sends on a closed Endpoint.
var ErrEndpointClosed = fmt.Errorf("stack: endpoint closed: %w", net.ErrClosed)

// Endpoint is a gVisor link endpoint over one or more AF_XDP ports, one per
// NIC queue. Each queue has a receive goroutine ("stack rx q<N>", started by
// Attach, stopped by Close) that takes frames in batches, copies them into
// netstack buffers, gives the frames straight back to the port, verifies
// checksums, coalesces TCP segments (GRO) and delivers the packets. Sends
// pick a queue by flow hash, cut large TCP segments into MTU-sized frames
// (software GSO), write them into UMEM frames and put them on the TX ring
// with one kick per batch.
//
// The Endpoint owns its ports: Close drains their TX rings and closes them.
type Endpoint struct {
	opts     EndpointOptions
	mac      tcpip.LinkAddress
	mtu      uint32
	maxFrame int
	queues   []*queue
	flows    *flowTable // nil with a single queue; see FlowQueue

	closed atomic.Bool
	wg     sync.WaitGroup // the receive goroutines

	// udp demultiplexes received datagrams to connected and
	// address-bound sockets' fast receive queues (udpfast.go): udpFlow ->
	// *udpFastRX. udpSocks counts them, so that frames skip the lookup
	// while there are none.
	udp      sync.Map
	udpSocks atomic.Int64

	mu sync.RWMutex
	// +checklocks:mu
	dispatcher gstack.NetworkDispatcher
	// +checklocks:mu
	stop chan struct{} // closed to stop the receive goroutines
	// +checklocks:mu
	onClose func()
	// +checklocks:mu
	closeErr error
}

var (
	_ gstack.LinkEndpoint = (*Endpoint)(nil)
	_ gstack.GSOEndpoint  = (*Endpoint)(nil)
)

// NewEndpoint returns an Endpoint over ports, queue i on ports[i]. It takes
// ownership of the ports, also when it fails.
func NewEndpoint(ports []Port, opts EndpointOptions) (*Endpoint, error) {
	e, err := newEndpoint(ports, opts)
	if err != nil {
		for _, p := range ports {
			_ = p.Close()
		}
		return nil, err
	}
	return e, nil
}

func newEndpoint(ports []Port, opts EndpointOptions) (*Endpoint, error) {
	if len(ports) == 0 {
		return nil, errors.New("stack: endpoint needs at least one port")
	}
	if len(opts.MAC) != 6 {
		return nil, fmt.Errorf("stack: endpoint MAC %v is not an Ethernet address", opts.MAC)
	}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	if opts.RXBatch <= 0 {
		opts.RXBatch = defaultRXBatch
	}
	if opts.TXWait <= 0 {
		opts.TXWait = defaultTXWait
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = defaultDrainTimeout
	}
	if opts.GSOMaxSize == 0 {
		opts.GSOMaxSize = defaultGSOMaxSize
	}
	if opts.GSOMaxSize > defaultGSOMaxSize {
		return nil, fmt.Errorf("stack: GSO max size %d above %d", opts.GSOMaxSize, defaultGSOMaxSize)
	}
	maxFrame := math.MaxInt
	for i, p := range ports {
		if p == nil {
			return nil, fmt.Errorf("stack: port %d is nil", i)
		}
		// What a frame holds after the room for its TX metadata.
		maxFrame = min(maxFrame, p.FrameSize()-p.TxHeadroom())
	}
	if int(opts.MTU)+header.EthernetMinimumSize > maxFrame || opts.MTU < header.IPv6MinimumMTU {
		return nil, fmt.Errorf("stack: MTU %d: want %d..%d for %d-byte frames", opts.MTU, header.IPv6MinimumMTU, maxFrame-header.EthernetMinimumSize, maxFrame)
	}
	e := &Endpoint{
		opts:     opts,
		mac:      tcpip.LinkAddress(opts.MAC),
		mtu:      opts.MTU,
		maxFrame: int(opts.MTU) + header.EthernetMinimumSize,
	}
	for i, p := range ports {
		e.queues = append(e.queues, newQueue(e, i, p))
	}
	if len(ports) > 1 {
		e.flows = newFlowTable()
	}
	return e, nil
}

// Queues returns the number of queues.
func (e *Endpoint) Queues() int { return len(e.queues) }

// Attach starts the receive goroutines, or tells them to stop when d is nil
// (the NIC is being removed). It does not wait for them: netstack calls it
// with its own locks held, which a goroutine delivering a packet may be
// waiting for. Close (and Stack.Close) wait.
func (e *Endpoint) Attach(d gstack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d == nil {
		e.signalStopLocked()
		e.dispatcher = nil
		return
	}
	if e.dispatcher != nil || e.closed.Load() {
		return
	}
	e.dispatcher = d
	// The goroutines get their own copy: signalStopLocked clears e.stop
	// under e.mu, which they do not hold.
	stop := make(chan struct{})
	e.stop = stop
	for _, q := range e.queues {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			q.rxLoop(d, stop)
		}()
	}
}

// signalStopLocked tells the receive goroutines to stop.
//
// +checklocks:e.mu
func (e *Endpoint) signalStopLocked() {
	if e.stop == nil {
		return
	}
	close(e.stop)
	e.stop = nil
	for _, q := range e.queues {
		q.port.Wake()
	}
}

// stopRX stops the receive goroutines and waits for them. It must not be
// called with netstack's locks held (see Attach).
func (e *Endpoint) stopRX() {
	e.mu.Lock()
	e.signalStopLocked()
	e.mu.Unlock()
	e.wg.Wait()
}

// IsAttached implements stack.LinkEndpoint.
func (e *Endpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Wait implements stack.LinkEndpoint: it waits for the receive goroutines,
// which stop on Close or Attach(nil). Netstack's Stack.Wait calls it with
// the stack's lock held, which a receive goroutine may need to finish its
// batch: stop them first (Stack.Close does), or call Close instead.
func (e *Endpoint) Wait() { e.wg.Wait() }

// MTU implements stack.LinkEndpoint.
func (e *Endpoint) MTU() uint32 { return e.mtu }

// SetMTU implements stack.LinkEndpoint. The MTU is fixed by the frame size
// at creation; changes are ignored.
func (*Endpoint) SetMTU(uint32) {}

// MaxHeaderLength implements stack.LinkEndpoint.
func (*Endpoint) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.
func (e *Endpoint) LinkAddress() tcpip.LinkAddress { return e.mac }

// SetLinkAddress implements stack.LinkEndpoint; the MAC is fixed.
func (*Endpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint. RX checksum offload is claimed
// because the endpoint verifies checksums itself, before GRO (whose merged
// segments would fail netstack's check); see verifyChecksums.
func (e *Endpoint) Capabilities() gstack.LinkEndpointCapabilities {
	return gstack.CapabilityResolutionRequired | gstack.CapabilityRXChecksumOffload
}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *Endpoint) GSOMaxSize() uint32 {
	if e.opts.DisableGSO {
		return 0
	}
	return e.opts.GSOMaxSize
}

// SupportedGSO implements stack.GSOEndpoint: segmentation is done here, in
// software, as a NIC would (TCP hands down partial checksums).
func (e *Endpoint) SupportedGSO() gstack.SupportedGSO {
	if e.opts.DisableGSO {
		return gstack.GSONotSupported
	}
	return gstack.HostGSOSupported
}

// ARPHardwareType implements stack.LinkEndpoint.
func (*Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.
func (e *Endpoint) AddHeader(pkt *gstack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = e.mac
	}
	eth.Encode(&header.EthernetFields{
		SrcAddr: src,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements stack.LinkEndpoint.
func (*Endpoint) ParseHeader(pkt *gstack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (e *Endpoint) SetOnCloseAction(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onClose = f
}

// Close implements stack.LinkEndpoint: it stops the receive goroutines,
// waits (up to DrainTimeout) for the kernel to complete every transmission,
// so all frames are back in the pools, and closes the ports. The stack calls
// it when the NIC is removed or the stack closes. Close is idempotent.
func (e *Endpoint) Close() {
	if e.closed.Swap(true) {
		return
	}
	e.stopRX()
	e.mu.Lock()
	e.dispatcher = nil
	onClose := e.onClose
	e.mu.Unlock()
	if onClose != nil {
		onClose()
	}
	var errs []error
	for _, q := range e.queues {
		errs = append(errs, q.close(e.opts.DrainTimeout))
	}
	e.mu.Lock()
	e.closeErr = errors.Join(errs...)
	e.mu.Unlock()
}

// CloseErr returns what closing the ports reported (a TX drain that timed
// out, a port that failed to close), once Close has returned.
func (e *Endpoint) CloseErr() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.closeErr
}

// Stats returns the counters of every queue, indexed by queue.
func (e *Endpoint) Stats() []QueueStats {
	out := make([]QueueStats, len(e.queues))
	for i, q := range e.queues {
		out[i] = q.ctr.load()
	}
	return out
}

// Total adds up per-queue statistics.
func Total(qs []QueueStats) QueueStats {
	var t QueueStats
	for _, q := range qs {
		t.add(q)
	}
	return t
}
