package stack

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/qdisc/fifo"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/xdpnet/xdpnet/bufring"
)

// Errors returned by the set-up API.
var (
	// ErrClosed is returned by operations on a closed Stack. It wraps
	// net.ErrClosed.
	ErrClosed = fmt.Errorf("stack closed: %w", netErrClosed)
	// ErrNoNIC is returned when an operation needs a NIC and none (or no
	// matching one) exists.
	ErrNoNIC = errors.New("stack: no matching NIC")
	// ErrAmbiguousNIC is returned by Stack-level helpers that pick a NIC
	// implicitly when several NICs could match; use the NIC methods instead.
	ErrAmbiguousNIC = errors.New("stack: several NICs, name one")
)

// BufferRange is a socket buffer size range in bytes, as in Linux's
// tcp_rmem/tcp_wmem: the minimum, the initial size and the maximum that
// auto-tuning may reach. Zero fields take the package defaults.
type BufferRange struct {
	Min, Default, Max int
}

// SYNCookieMode says when a listener answers SYNs with SYN cookies
// (RFC 4987 section 3.6) instead of keeping per-connection state.
type SYNCookieMode int

const (
	// SYNCookiesOnOverflow sends cookies only when a listener's SYN or
	// accept queue is full, which is what protects it under a SYN flood.
	// It is the default.
	SYNCookiesOnOverflow SYNCookieMode = iota
	// SYNCookiesAlways sends cookies for every SYN.
	SYNCookiesAlways
)

// TCPOptions are the stack-wide TCP settings.
type TCPOptions struct {
	// DisableSACK turns selective acknowledgements (RFC 2018) off.
	DisableSACK bool
	// CongestionControl is "cubic" (RFC 8312, the default) or "reno"
	// (RFC 5681).
	CongestionControl string
	// SendBuffer and ReceiveBuffer bound the per-connection buffers.
	// Defaults: 4 KiB / 1 MiB / 8 MiB.
	SendBuffer, ReceiveBuffer BufferRange
	// DisableReceiveAutoTuning fixes the receive buffer at its initial size
	// instead of growing it with the measured bandwidth-delay product.
	DisableReceiveAutoTuning bool
	// SYNCookies selects when SYN cookies are used.
	SYNCookies SYNCookieMode
	// Nagle turns Nagle's algorithm (RFC 896) on for new connections; it
	// is off by default, as a proxy forwards what it has at once.
	Nagle bool
	// ListenBacklog bounds each listener's queue of connections not yet
	// accepted and of half-open ones (default 4096, Linux's somaxconn);
	// beyond it, SYNs get cookies (SYNCookiesOnOverflow).
	ListenBacklog int
}

// Options configure a Stack.
type Options struct {
	TCP TCPOptions
	// Forwarding lets the stack route packets between its NICs. Off by
	// default: the engine terminates connections, it does not route.
	Forwarding bool
}

const (
	defaultBufMin     = 4 << 10
	defaultBufInitial = 1 << 20
	defaultBufMax     = 8 << 20
)

func (r BufferRange) withDefaults() BufferRange {
	if r.Min == 0 {
		r.Min = defaultBufMin
	}
	if r.Default == 0 {
		r.Default = max(defaultBufInitial, r.Min)
	}
	if r.Max == 0 {
		r.Max = max(defaultBufMax, r.Default)
	}
	return r
}

func (r BufferRange) valid() bool {
	return r.Min > 0 && r.Min <= r.Default && r.Default <= r.Max
}

// maxDatagramBuffer is the size of the UDP fast path's payload buffers: the
// largest UMEM frame, which no payload exceeds.
const maxDatagramBuffer = 4096

// DatagramBufferStats is the pool of the UDP fast path's payload copies.
func (s *Stack) DatagramBufferStats() bufring.ByteStats { return s.datagrams.Stats() }

// Stack is one gVisor netstack instance. Its methods are safe for concurrent
// use.
type Stack struct {
	ns      *gstack.Stack
	backlog int
	// datagrams holds the payload copies of the UDP fast path's receive
	// queues (udpFastRX): one size class, a UMEM frame. Unbounded: each
	// queue is bounded by its socket's receive buffer size.
	datagrams *bufring.BytePool

	// tcpNoEndpoint counts segments for no TCP endpoint, which netstack
	// answers without counting (see Drops).
	tcpNoEndpoint atomic.Uint64

	mu sync.Mutex
	// +checklocks:mu
	nics []*NIC
	// +checklocks:mu
	closed bool
}

// New returns a stack with IPv4, IPv6, ARP, TCP, UDP and ICMP.
func New(opts Options) (*Stack, error) {
	t := opts.TCP
	t.SendBuffer = t.SendBuffer.withDefaults()
	t.ReceiveBuffer = t.ReceiveBuffer.withDefaults()
	if !t.SendBuffer.valid() || !t.ReceiveBuffer.valid() {
		return nil, fmt.Errorf("stack: buffer range must be 0 < min <= default <= max: send %+v, receive %+v", t.SendBuffer, t.ReceiveBuffer)
	}
	if t.CongestionControl == "" {
		t.CongestionControl = "cubic"
	}
	if t.CongestionControl != "cubic" && t.CongestionControl != "reno" {
		return nil, fmt.Errorf("stack: unknown congestion control %q (want cubic or reno)", t.CongestionControl)
	}

	ns := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		// Packets between two local addresses stay inside the stack.
		HandleLocal: true,
	})
	if t.ListenBacklog <= 0 {
		t.ListenBacklog = defaultListenBacklog
	}
	datagrams, err := bufring.NewBytePool(bufring.ByteConfig{Sizes: []int{maxDatagramBuffer}})
	if err != nil {
		ns.Destroy()
		return nil, fmt.Errorf("stack: datagram buffers: %w", err)
	}
	s := &Stack{ns: ns, backlog: t.ListenBacklog, datagrams: datagrams}
	ns.SetTransportProtocolHandler(tcp.ProtocolNumber, s.countTCPNoEndpoint)

	sack := tcpip.TCPSACKEnabled(!t.DisableSACK)
	cc := tcpip.CongestionControlOption(t.CongestionControl)
	snd := tcpip.TCPSendBufferSizeRangeOption(t.SendBuffer)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption(t.ReceiveBuffer)
	moderate := tcpip.TCPModerateReceiveBufferOption(!t.DisableReceiveAutoTuning)
	cookies := tcpip.TCPAlwaysUseSynCookies(t.SYNCookies == SYNCookiesAlways)
	delay := tcpip.TCPDelayEnabled(t.Nagle)
	for _, o := range []tcpip.SettableTransportProtocolOption{&sack, &cc, &snd, &rcv, &moderate, &cookies, &delay} {
		if err := ns.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			ns.Destroy()
			return nil, fmt.Errorf("stack: tcp option %T: %s", o, err)
		}
	}
	if opts.Forwarding {
		for _, p := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
			if err := ns.SetForwardingDefaultAndAllNICs(p, true); err != nil {
				ns.Destroy()
				return nil, fmt.Errorf("stack: forwarding: %s", err)
			}
		}
	}
	return s, nil
}

// Netstack returns the underlying gVisor stack, for what this package does
// not wrap (statistics, socket options, raw endpoints).
func (s *Stack) Netstack() *gstack.Stack { return s.ns }

// NICOptions configure a NIC.
type NICOptions struct {
	// Name names the NIC in statistics and errors; default "nicN".
	Name string
	// QDisc is the queueing discipline in front of the link endpoint; nil
	// writes straight to the endpoint from the sending goroutine.
	QDisc gstack.QueueingDiscipline
	// Promiscuous accepts packets for any destination address.
	Promiscuous bool
}

// NIC is one interface of a Stack.
type NIC struct {
	s    *Stack
	id   tcpip.NICID
	name string
	ep   gstack.LinkEndpoint

	mu sync.Mutex
	// +checklocks:mu
	prefixes []netip.Prefix
}

// AddNIC attaches a link endpoint to the stack and enables it. The stack
// owns ep from now on: Close (or RemoveNIC) closes it.
func (s *Stack) AddNIC(ep gstack.LinkEndpoint, opts NICOptions) (*NIC, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	id := s.ns.NextNICID()
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("nic%d", id)
	}
	if err := s.ns.CreateNICWithOptions(id, ep, gstack.NICOptions{Name: opts.Name, QDisc: opts.QDisc}); err != nil {
		return nil, fmt.Errorf("stack: add NIC %s: %s", opts.Name, err)
	}
	if opts.Promiscuous {
		if err := s.ns.SetPromiscuousMode(id, true); err != nil {
			return nil, fmt.Errorf("stack: NIC %s promiscuous: %s", opts.Name, err)
		}
	}
	n := &NIC{s: s, id: id, name: opts.Name, ep: ep}
	s.nics = append(s.nics, n)
	return n, nil
}

// NICs returns the stack's NICs in the order they were added.
func (s *Stack) NICs() []*NIC {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*NIC(nil), s.nics...)
}

// xdpEndpoint returns the Endpoint of NIC id, nil if it has none.
func (s *Stack) xdpEndpoint(id tcpip.NICID) *Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nics {
		if n.id == id {
			e, _ := n.ep.(*Endpoint)
			return e
		}
	}
	return nil
}

// ID returns the NIC's netstack ID.
func (n *NIC) ID() tcpip.NICID { return n.id }

// Name returns the NIC's name.
func (n *NIC) Name() string { return n.name }

// LinkEndpoint returns the endpoint the NIC was created with.
func (n *NIC) LinkEndpoint() gstack.LinkEndpoint { return n.ep }

func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

func toAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

func toSubnet(p netip.Prefix) tcpip.Subnet {
	p = p.Masked()
	return tcpip.AddressWithPrefix{Address: toAddr(p.Addr()), PrefixLen: p.Bits()}.Subnet()
}

// AddAddress assigns p.Addr() to the NIC and adds an on-link route for p's
// subnet, as `ip addr add` does. IPv4-mapped IPv6 prefixes are refused.
func (n *NIC) AddAddress(p netip.Prefix) error {
	if !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return fmt.Errorf("stack: NIC %s: invalid address %v", n.name, p)
	}
	pa := tcpip.ProtocolAddress{
		Protocol: netProto(p.Addr()),
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   toAddr(p.Addr()),
			PrefixLen: p.Bits(),
		},
	}
	if err := n.s.ns.AddProtocolAddress(n.id, pa, gstack.AddressProperties{}); err != nil {
		return fmt.Errorf("stack: NIC %s: add %v: %s", n.name, p, err)
	}
	n.mu.Lock()
	n.prefixes = append(n.prefixes, p)
	n.mu.Unlock()
	if p.Bits() < p.Addr().BitLen() {
		return n.AddRoute(p.Masked(), netip.Addr{})
	}
	return nil
}

// RemoveAddress removes a from the NIC along with the on-link route that
// AddAddress installed for it.
func (n *NIC) RemoveAddress(a netip.Addr) error {
	if err := n.s.ns.RemoveAddress(n.id, toAddr(a)); err != nil {
		return fmt.Errorf("stack: NIC %s: remove %v: %s", n.name, a, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, p := range n.prefixes {
		if p.Addr() != a {
			continue
		}
		n.prefixes = append(n.prefixes[:i], n.prefixes[i+1:]...)
		sn := toSubnet(p)
		n.s.ns.RemoveRoutes(func(r tcpip.Route) bool {
			return r.NIC == n.id && r.Destination.Equal(sn) && r.Gateway.Len() == 0
		})
		break
	}
	return nil
}

// Addresses returns the prefixes assigned with AddAddress.
func (n *NIC) Addresses() []netip.Prefix {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]netip.Prefix(nil), n.prefixes...)
}

// AddRoute routes dst through this NIC, via gateway gw, or on-link when gw
// is the zero Addr. More specific routes win, as in any IP stack.
func (n *NIC) AddRoute(dst netip.Prefix, gw netip.Addr) error {
	if !dst.IsValid() {
		return fmt.Errorf("stack: NIC %s: invalid route destination %v", n.name, dst)
	}
	if gw.IsValid() && gw.Is4() != dst.Addr().Is4() {
		return fmt.Errorf("stack: NIC %s: gateway %v does not match the family of %v", n.name, gw, dst)
	}
	r := tcpip.Route{Destination: toSubnet(dst), NIC: n.id}
	if gw.IsValid() {
		r.Gateway = toAddr(gw)
	}
	n.s.ns.AddRoute(r)
	return nil
}

// SetDefaultGateway routes every destination of gw's family that no more
// specific route covers through gw.
func (n *NIC) SetDefaultGateway(gw netip.Addr) error {
	if !gw.IsValid() {
		return fmt.Errorf("stack: NIC %s: invalid gateway", n.name)
	}
	dst := netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	if gw.Is4() {
		dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	n.s.ns.RemoveRoutes(func(r tcpip.Route) bool {
		return r.NIC == n.id && r.Destination.Prefix() == 0 && r.Destination.ID().BitLen() == toAddr(gw).BitLen()
	})
	return n.AddRoute(dst, gw)
}

// SetUp brings the NIC up or down. While down it neither sends nor
// receives; TCP connections survive and recover by retransmission once it is
// up again, within their retransmission limits.
func (n *NIC) SetUp(up bool) error {
	var err tcpip.Error
	if up {
		err = n.s.ns.EnableNIC(n.id)
	} else {
		err = n.s.ns.DisableNIC(n.id)
	}
	if err != nil {
		return fmt.Errorf("stack: NIC %s up=%v: %s", n.name, up, err)
	}
	return nil
}

// onlyNIC returns the stack's single NIC, for the Stack-level helpers.
func (s *Stack) onlyNIC() (*NIC, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch len(s.nics) {
	case 0:
		return nil, ErrNoNIC
	case 1:
		return s.nics[0], nil
	default:
		return nil, ErrAmbiguousNIC
	}
}

// AddAddress assigns p to the stack's only NIC (see NIC.AddAddress). With
// several NICs it returns ErrAmbiguousNIC.
func (s *Stack) AddAddress(p netip.Prefix) error {
	n, err := s.onlyNIC()
	if err != nil {
		return err
	}
	return n.AddAddress(p)
}

// AddRoute routes dst via gw through the NIC that has gw on-link (one of
// its address prefixes contains gw). With no gateway (zero gw) the stack
// must have a single NIC.
func (s *Stack) AddRoute(dst netip.Prefix, gw netip.Addr) error {
	if !gw.IsValid() {
		n, err := s.onlyNIC()
		if err != nil {
			return err
		}
		return n.AddRoute(dst, gw)
	}
	for _, n := range s.NICs() {
		for _, p := range n.Addresses() {
			if p.Contains(gw) {
				return n.AddRoute(dst, gw)
			}
		}
	}
	return fmt.Errorf("%w: gateway %v is on no NIC's subnet", ErrNoNIC, gw)
}

// Close aborts every socket, stops the protocol workers, removes the NICs
// and closes their link endpoints. It is idempotent.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	nics := s.nics
	s.mu.Unlock()
	// Receive goroutines of link endpoints may be waiting for netstack's
	// stack lock, which netstack holds while it waits for them in Wait:
	// stop them before.
	for _, n := range nics {
		if st, ok := n.ep.(interface{ stopRX() }); ok {
			st.stopRX()
		}
	}
	s.ns.Close()
	s.ns.Wait()
	return nil
}

func (s *Stack) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// txQueueLen bounds each transmit queue of the default queueing discipline,
// in packets (a GSO segment counts once).
const txQueueLen = 1000

// AddXDPNIC builds an Endpoint over ports (see NewEndpoint, which takes
// ownership of them) and adds it as a NIC. Unless nopts.QDisc is set, sends
// go through a FIFO queueing discipline with one queue and one goroutine per
// endpoint queue, so that packets written by many connections leave in
// batches, one TX kick each, instead of one kick per packet.
func (s *Stack) AddXDPNIC(ports []Port, eopts EndpointOptions, nopts NICOptions) (*NIC, *Endpoint, error) {
	ep, err := NewEndpoint(ports, eopts)
	if err != nil {
		return nil, nil, err
	}
	if nopts.QDisc == nil {
		nopts.QDisc = fifo.New(ep, ep.Queues(), txQueueLen)
	}
	n, err := s.AddNIC(ep, nopts)
	if err != nil {
		ep.Close()
		return nil, nil, err
	}
	return n, ep, nil
}
