package stacktest

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xdpnet/xdpnet/stack"
)

// The addresses Pair assigns, from the lab's client-side plan (DESIGN.md).
var (
	AddrA4 = netip.MustParseAddr("198.18.1.1")
	AddrB4 = netip.MustParseAddr("198.18.1.2")
	AddrA6 = netip.MustParseAddr("2001:2:0:1::1")
	AddrB6 = netip.MustParseAddr("2001:2:0:1::2")

	MACA = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x01, 0x01}
	MACB = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x01, 0x02}
)

// Options configure NewPair. The zero value is what Pair uses.
type Options struct {
	// MTU is the IP MTU of the link; default 1500.
	MTU uint32
	// A and B configure the two stacks.
	A, B stack.Options
}

// Result is what NewPair builds.
type Result struct {
	A, B       *stack.Stack
	NICA, NICB *stack.NIC
	Link       *Link
}

// Link is the in-memory wire between the two stacks.
type Link struct {
	down    atomic.Bool
	dropped atomic.Uint64
	sent    atomic.Uint64
}

// SetUp connects (true) or cuts (false) the wire. A cut wire drops every
// frame silently, like a pulled cable: the stacks still see their NICs up,
// so TCP has to recover by retransmission.
func (l *Link) SetUp(up bool) { l.down.Store(!up) }

// Sent and Dropped count frames carried and frames dropped while cut, both
// directions together.
func (l *Link) Sent() uint64    { return l.sent.Load() }
func (l *Link) Dropped() uint64 { return l.dropped.Load() }

// Pair returns two stacks on one in-memory link: a has 198.18.1.1/24 and
// 2001:2:0:1::1/64, b has 198.18.1.2/24 and 2001:2:0:1::2/64. They are
// closed by t.Cleanup.
func Pair(t testing.TB) (a, b *stack.Stack) {
	r := NewPair(t, Options{})
	return r.A, r.B
}

// NewPair is Pair with options, returning the NICs and the link as well.
func NewPair(t testing.TB, opts Options) *Result {
	t.Helper()
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	link := &Link{}
	pa, pb := pipe.New(tcpip.LinkAddress(MACA), tcpip.LinkAddress(MACB), opts.MTU+header.EthernetMinimumSize)
	r := &Result{Link: link}
	r.A, r.NICA = sideEP(t, "a", opts.A, ethernet.New(&wire{Endpoint: pa, link: link}), AddrA4, AddrA6)
	r.B, r.NICB = sideEP(t, "b", opts.B, ethernet.New(&wire{Endpoint: pb, link: link}), AddrB4, AddrB6)
	return r
}

func sideEP(t testing.TB, name string, opts stack.Options, ep gstack.LinkEndpoint, a4, a6 netip.Addr) (*stack.Stack, *stack.NIC) {
	t.Helper()
	s, err := stack.New(opts)
	if err != nil {
		ep.Close()
		t.Fatalf("stacktest: stack %s: %v", name, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	nic, err := s.AddNIC(ep, stack.NICOptions{Name: name})
	if err != nil {
		t.Fatalf("stacktest: stack %s: %v", name, err)
	}
	for _, p := range []netip.Prefix{netip.PrefixFrom(a4, 24), netip.PrefixFrom(a6, 64)} {
		if err := nic.AddAddress(p); err != nil {
			t.Fatalf("stacktest: stack %s: %v", name, err)
		}
	}
	return s, nic
}

// wire is one end of the pipe, with the link's cut switch and counters.
type wire struct {
	*pipe.Endpoint
	link *Link
}

var _ gstack.LinkEndpoint = (*wire)(nil)

// WritePackets drops the frames while the link is cut. The caller keeps its
// reference to each packet either way.
func (w *wire) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	n := pkts.Len()
	if w.link.down.Load() {
		w.link.dropped.Add(uint64(n))
		return n, nil
	}
	w.link.sent.Add(uint64(n))
	return w.Endpoint.WritePackets(pkts)
}

// XDPOptions configure NewXDPPair. The zero value gives one queue, default
// MemConfig and default endpoint options.
type XDPOptions struct {
	Queues int
	Mem    MemConfig
	// A and B configure the endpoints; MAC is filled in.
	A, B stack.EndpointOptions
	// StackA and StackB configure the stacks.
	StackA, StackB stack.Options
}

// XDPResult is what NewXDPPair builds.
type XDPResult struct {
	A, B       *stack.Stack
	EPA, EPB   *stack.Endpoint
	NICA, NICB *stack.NIC
	// Wires[i] joins queue i of A to queue i of B.
	Wires []*MemWire
}

// SetUp connects or cuts every wire.
func (r *XDPResult) SetUp(up bool) {
	for _, w := range r.Wires {
		w.SetUp(up)
	}
}

// NewXDPPair is Pair with stack.Endpoint over MemWires as the link: the
// engine's AF_XDP data path (batching, GRO, GSO, checksums, frame
// accounting) without privileges. Addresses are Pair's. Both stacks close at
// t.Cleanup.
func NewXDPPair(t testing.TB, opts XDPOptions) *XDPResult {
	t.Helper()
	if opts.Queues <= 0 {
		opts.Queues = 1
	}
	r := &XDPResult{}
	var pa, pb []stack.Port
	for range opts.Queues {
		w, err := NewMemWire(opts.Mem)
		if err != nil {
			t.Fatalf("stacktest: %v", err)
		}
		r.Wires = append(r.Wires, w)
		pa, pb = append(pa, w.A), append(pb, w.B)
	}
	opts.A.MAC, opts.B.MAC = MACA, MACB
	r.A, r.NICA, r.EPA = xdpSide(t, "a", opts.StackA, pa, opts.A, AddrA4, AddrA6)
	r.B, r.NICB, r.EPB = xdpSide(t, "b", opts.StackB, pb, opts.B, AddrB4, AddrB6)
	return r
}

// xdpSide builds one stack of NewXDPPair the way the engine does, with
// Stack.AddXDPNIC (and so its default queueing discipline).
func xdpSide(t testing.TB, name string, so stack.Options, ports []stack.Port, eo stack.EndpointOptions, a4, a6 netip.Addr) (*stack.Stack, *stack.NIC, *stack.Endpoint) {
	t.Helper()
	s, err := stack.New(so)
	if err != nil {
		for _, p := range ports {
			_ = p.Close()
		}
		t.Fatalf("stacktest: stack %s: %v", name, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	nic, ep, err := s.AddXDPNIC(ports, eo, stack.NICOptions{Name: name})
	if err != nil {
		t.Fatalf("stacktest: stack %s: %v", name, err)
	}
	for _, p := range []netip.Prefix{netip.PrefixFrom(a4, 24), netip.PrefixFrom(a6, 64)} {
		if err := nic.AddAddress(p); err != nil {
			t.Fatalf("stacktest: stack %s: %v", name, err)
		}
	}
	return s, nic, ep
}
