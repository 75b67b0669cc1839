package stack

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/xdpnet/xdpnet/bufring"
)

// udpFastPath sends a UDP socket's datagrams to one destination (a
// connected socket's peer, or one of an address-bound socket's, see
// udpFastPeers) straight into UMEM frames of the Endpoint its route leaves
// by, skipping the netstack: no packet buffer, no route lookup, no qdisc
// goroutine per datagram. quic-go writes one datagram per call on any
// socket that is not a kernel *net.UDPConn, and through the netstack each
// call cost more than the encryption of the packet it carried.
//
// The frames are the ones the netstack would build: the headers come from a
// template made from the route and the socket's options (TTL or
// hop limit, TOS or traffic class, DF from the PMTU discovery setting with
// IPv4 ID 0, as netstack does for DF datagrams), the lengths and checksums
// are filled in per datagram. The template is rebuilt every
// fastRouteRefresh, which also asks the neighbour cache for the next hop's
// link address as a send through the netstack would, so a stale entry is
// re-confirmed (RFC 4861 section 7.3.3) and a changed or lost one noticed.
// Datagrams go through the netstack instead while no template can be made:
// the next hop is not resolved yet (the netstack then queues the datagram
// and resolves it), the route does not leave by an Endpoint (loopback, a
// local address, another link type), the destination is broadcast or
// multicast, the datagram needs fragmenting, or the endpoint disabled it
// (EndpointOptions.DisableUDPFastPath).
//
// What it does not do: deliver copies to netstack packet sockets, report
// asynchronous errors (an ICMP port unreachable) on the next write rather
// than the next read, or count against the socket's send buffer; the
// endpoint's frames bound what is in flight instead. It counts what the
// netstack would: the socket's, UDP's, IP's and the NIC's sent packets.
type udpFastPath struct {
	s             *Stack
	ep            tcpip.Endpoint
	local, remote tcpip.Address
	lport, rport  uint16
	proto         tcpip.NetworkProtocolNumber

	route atomic.Pointer[fastRoute] // nil: send through the netstack
	// refreshAt is when the template is next rebuilt (time since
	// fastEpoch); 0 makes the next write rebuild it.
	refreshAt  atomic.Int64
	refreshing atomic.Bool
	// ids numbers IPv4 datagrams sent without DF (RFC 6864 section 4.3
	// wants their IDs unique); datagrams with DF carry ID 0.
	ids atomic.Uint32
}

// udpFastPeers are the fast paths of an unconnected socket bound to one
// address, one per destination, made on the first datagram to it. Past
// maxCachedPeers destinations the cache starts over, as ReadFrom's address
// cache does.
type udpFastPeers struct {
	s     *Stack
	ep    tcpip.Endpoint
	proto tcpip.NetworkProtocolNumber
	local tcpip.FullAddress

	paths sync.Map // udpPeer -> *udpFastPath
	n     atomic.Int64
}

// path returns the fast path to to, nil if to is not of the socket's family.
func (p *udpFastPeers) path(to *net.UDPAddr) *udpFastPath {
	ip := to.IP
	if p.proto == header.IPv4ProtocolNumber {
		if ip = ip.To4(); ip == nil {
			return nil
		}
	} else if len(ip) != net.IPv6len || ip.To4() != nil {
		return nil
	}
	if to.Port <= 0 || to.Port > 0xffff {
		return nil
	}
	k := udpPeer{tcpip.AddrFromSlice(ip), uint16(to.Port)}
	if f, ok := p.paths.Load(k); ok {
		return f.(*udpFastPath)
	}
	if p.n.Add(1) > maxCachedPeers {
		p.paths.Clear()
		p.n.Store(1)
	}
	f, _ := p.paths.LoadOrStore(k, newUDPFastPath(p.s, p.ep, p.proto, p.local, tcpip.FullAddress{Addr: k.addr, Port: k.port}))
	return f.(*udpFastPath)
}

// fastRouteRefresh is how long a header template is used before it is
// rebuilt; a route or neighbour change is noticed within it.
const fastRouteRefresh = 250 * time.Millisecond

var fastEpoch = time.Now()

// fastRoute is a header template: Ethernet, IP and UDP headers with every
// per-datagram field zero.
type fastRoute struct {
	q      *queue
	hdr    [header.EthernetMinimumSize + header.IPv6MinimumSize + header.UDPMinimumSize]byte
	hdrLen int
	v4, df bool
	ids    *atomic.Uint32
	pseudo uint16 // pseudo-header checksum without the length
	// csumStart is the UDP header's offset in the frame, or -1 for IPv4
	// with SO_NO_CHECK (no checksum sent).
	csumStart  int
	maxPayload int

	sent     []*tcpip.StatCounter // the netstack's sent-packet counters
	nicBytes *tcpip.StatCounter
}

// newUDPFastPath returns the fast path from local to remote of socket ep.
func newUDPFastPath(s *Stack, ep tcpip.Endpoint, proto tcpip.NetworkProtocolNumber, local, remote tcpip.FullAddress) *udpFastPath {
	return &udpFastPath{s: s, ep: ep, local: local.Addr, remote: remote.Addr, lport: local.Port, rport: remote.Port, proto: proto}
}

// write sends b if the fast path can; sent false means send it through the
// netstack. A datagram dropped for want of frames counts as sent, as the
// kernel's UDP does with a qdisc drop (ENOBUFS is reported only with
// IP_RECVERR).
func (f *udpFastPath) write(b []byte) (sent bool) {
	if now := int64(time.Since(fastEpoch)); now >= f.refreshAt.Load() {
		f.refresh(now)
	}
	r := f.route.Load()
	if r == nil || len(b) > r.maxPayload {
		return false
	}
	n := 0
	if _, err := r.q.writeFrame(func(fr []byte) int { n = r.build(fr, b); return n }, r.csumStart); err != nil {
		// The endpoint is closing: the netstack reports it.
		f.route.CompareAndSwap(r, nil)
		return false
	}
	for _, c := range r.sent {
		c.Increment()
	}
	r.nicBytes.IncrementBy(uint64(n))
	return true
}

// refresh rebuilds the template; concurrent writers keep the current one.
func (f *udpFastPath) refresh(now int64) {
	if f.refreshing.Swap(true) {
		return
	}
	defer f.refreshing.Store(false)
	f.refreshAt.Store(now + int64(fastRouteRefresh))
	f.route.Store(f.resolve())
}

// resolve builds a template from the current route, or returns nil when
// datagrams must go through the netstack.
func (f *udpFastPath) resolve() *fastRoute {
	rt, terr := f.s.ns.FindRoute(0, f.local, f.remote, f.proto, false /* multicastLoop */)
	if terr != nil {
		return nil
	}
	defer rt.Release()
	if rt.Loop() != gstack.PacketOut || rt.IsOutboundBroadcast() || header.IsV4MulticastAddress(f.remote) || header.IsV6MulticastAddress(f.remote) {
		return nil
	}
	e := f.s.xdpEndpoint(rt.NICID())
	if e == nil || e.opts.DisableUDPFastPath || e.closed.Load() {
		return nil
	}
	// As a send through the netstack does, this asks the neighbour cache
	// (starting resolution, or re-confirming a stale entry); once an
	// unresolved next hop resolves, the next write rebuilds the template.
	// The callback runs before ResolvedFields returns when the address is
	// known, later (from the netstack) when resolution completes, which
	// may be before ResolvedFields returns too.
	var mu sync.Mutex
	var linkAddr tcpip.LinkAddress
	returned := false
	terr = rt.ResolvedFields(func(res gstack.ResolvedFieldsResult) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case res.Err != nil:
		case !returned:
			linkAddr = res.RouteInfo.RemoteLinkAddress
		default:
			f.refreshAt.Store(0)
		}
	})
	mu.Lock()
	returned = true
	mu.Unlock()
	if _, ok := terr.(*tcpip.ErrWouldBlock); ok && linkAddr != "" {
		terr = nil // resolved meanwhile
	}
	if terr != nil || len(linkAddr) != header.EthernetAddressSize {
		return nil
	}
	ttl, tos, df := f.ipOptions(rt)
	r := &fastRoute{v4: f.proto == header.IPv4ProtocolNumber, df: df, ids: &f.ids}
	header.Ethernet(r.hdr[:]).Encode(&header.EthernetFields{SrcAddr: e.mac, DstAddr: linkAddr, Type: f.proto})
	ip := r.hdr[header.EthernetMinimumSize:]
	ipLen := header.IPv6MinimumSize
	if r.v4 {
		ipLen = header.IPv4MinimumSize
		fields := header.IPv4Fields{TTL: ttl, TOS: tos, Protocol: uint8(udp.ProtocolNumber), SrcAddr: f.local, DstAddr: f.remote}
		if df {
			fields.Flags = header.IPv4FlagDontFragment
		}
		header.IPv4(ip).Encode(&fields)
		header.IPv4(ip).SetChecksum(0)
	} else {
		header.IPv6(ip).Encode(&header.IPv6Fields{TrafficClass: tos, TransportProtocol: udp.ProtocolNumber, HopLimit: ttl, SrcAddr: f.local, DstAddr: f.remote})
	}
	header.UDP(ip[ipLen:]).Encode(&header.UDPFields{SrcPort: f.lport, DstPort: f.rport})
	r.hdrLen = header.EthernetMinimumSize + ipLen + header.UDPMinimumSize
	r.csumStart = r.hdrLen - header.UDPMinimumSize
	if r.v4 && f.ep.SocketOptions().GetNoChecksum() {
		r.csumStart = -1
	}
	r.pseudo = header.PseudoHeaderChecksum(udp.ProtocolNumber, f.local, f.remote, 0)
	// The route's MTU is what fits after the IP header.
	r.maxPayload = int(min(rt.MTU(), e.mtu-uint32(ipLen))) - header.UDPMinimumSize
	r.q = e.queues[e.pickFlow(f.proto, ip[:ipLen], ip[ipLen:ipLen+4])]

	st := f.s.ns.Stats()
	r.sent = []*tcpip.StatCounter{st.UDP.PacketsSent, st.IP.PacketsSent}
	if es, ok := f.ep.Stats().(*tcpip.TransportEndpointStats); ok {
		r.sent = append(r.sent, &es.PacketsSent)
	}
	info, ok := f.s.ns.NICInfo()[rt.NICID()]
	if !ok {
		return nil
	}
	r.sent = append(r.sent, info.Stats.Tx.Packets)
	r.nicBytes = info.Stats.Tx.Bytes
	return r
}

// ipOptions returns the TTL (hop limit), TOS (traffic class) and DF bit
// the netstack would put on the socket's datagrams.
func (f *udpFastPath) ipOptions(rt *gstack.Route) (ttl, tos uint8, df bool) {
	ttl = rt.DefaultTTL()
	if f.proto == header.IPv4ProtocolNumber {
		if v, err := f.ep.GetSockOptInt(tcpip.IPv4TTLOption); err == nil && v > 0 {
			ttl = uint8(v)
		}
		if v, err := f.ep.GetSockOptInt(tcpip.IPv4TOSOption); err == nil {
			tos = uint8(v)
		}
	} else {
		if v, err := f.ep.GetSockOptInt(tcpip.IPv6HopLimitOption); err == nil && v >= 0 {
			ttl = uint8(v)
		}
		if v, err := f.ep.GetSockOptInt(tcpip.IPv6TrafficClassOption); err == nil {
			tos = uint8(v)
		}
	}
	if v, err := f.ep.GetSockOptInt(tcpip.MTUDiscoverOption); err == nil {
		switch tcpip.PMTUDStrategy(v) {
		case tcpip.PMTUDiscoveryWant, tcpip.PMTUDiscoveryDo, tcpip.PMTUDiscoveryProbe:
			df = true
		}
	}
	return ttl, tos, df
}

// build writes the frame of payload into fr and returns its length. The
// UDP checksum field gets the pseudo-header sum, for writeFrame to finish.
func (r *fastRoute) build(fr, payload []byte) int {
	copy(fr, r.hdr[:r.hdrLen])
	n := r.hdrLen + copy(fr[r.hdrLen:], payload)
	udpLen := uint16(header.UDPMinimumSize + len(payload))
	ip := fr[header.EthernetMinimumSize:r.hdrLen]
	u := header.UDP(fr[r.hdrLen-header.UDPMinimumSize : n])
	u.SetLength(udpLen)
	if r.v4 {
		h := header.IPv4(ip)
		h.SetTotalLength(uint16(header.IPv4MinimumSize) + udpLen)
		if !r.df {
			h.SetID(uint16(r.ids.Add(1)))
		}
		h.SetChecksum(^h.CalculateChecksum())
	} else {
		header.IPv6(ip).SetPayloadLength(udpLen)
	}
	if r.csumStart >= 0 {
		u.SetChecksum(checksum.Combine(r.pseudo, udpLen))
	}
	return n
}

// udpFlow names a socket's datagrams as they arrive: to local from remote
// (a listening socket's has a zero remote).
type udpFlow struct {
	local, remote tcpip.Address
	lport, rport  uint16
}

// udpFastRX is a socket's receive queue for datagrams the Endpoint hands it
// straight from received frames (Endpoint.lookupUDP), skipping netstack's
// IP and UDP receive path: a connected socket's, or a listening socket's
// bound to one unicast address (wildcard sockets stay with netstack, which
// knows their dual-stack rules). Only unfragmented datagrams of the
// socket's flow (for a connected socket, from its peer) without IP options
// or IPv6 extension headers come this way, after the endpoint verified their checksums; anything else
// (fragments, ICMP errors) still goes through netstack, and the socket reads
// both. The queue holds copies of the payloads, bounded as netstack bounds
// its own queue: a datagram is dropped (counted in UDP's
// ReceiveBufferErrors) when the queued bytes reach the socket's receive
// buffer size.
type udpFastRX struct {
	flow udpFlow
	ops  *tcpip.SocketOptions
	wake chan struct{}     // the socket's read wake-up
	pool *bufring.BytePool // the stack's datagram buffers (Stack.datagrams)

	mu sync.Mutex

	// +checklocks:mu
	queue []rxDatagram
	// +checklocks:mu
	head int
	// +checklocks:mu
	bytes int
	// +checklocks:mu
	closed bool

	received   []*tcpip.StatCounter // the netstack's received-packet counters
	overflows  []*tcpip.StatCounter
	nicPackets *tcpip.StatCounter
	nicBytes   *tcpip.StatCounter
}

// rxDatagram is a queued datagram: a copy of its payload, in a buffer of
// the stack's datagram pool that the queue owns until pop copies it out
// (pop releases it) or close drops it (close releases it), and its sender.
type rxDatagram struct {
	b    []byte
	from udpPeer
}

// push queues a copy of payload from sender from (frameLen is the whole
// frame's length, for the NIC's byte counter). It runs on the Endpoint's
// receive goroutine.
func (r *udpFastRX) push(payload []byte, from udpPeer, frameLen int) {
	r.nicPackets.Increment()
	r.nicBytes.IncrementBy(uint64(frameLen))
	r.mu.Lock()
	if r.closed || r.bytes >= int(r.ops.GetReceiveBufferSize()) {
		r.mu.Unlock()
		for _, c := range r.overflows {
			c.Increment()
		}
		return
	}
	// An unbounded pool: Acquire neither waits nor fails for a payload
	// within a UMEM frame, the largest class.
	b, err := r.pool.Acquire(context.Background(), len(payload))
	if err != nil {
		r.mu.Unlock()
		for _, c := range r.overflows {
			c.Increment()
		}
		return
	}
	copy(b, payload)
	r.queue = append(r.queue, rxDatagram{b: b, from: from})
	r.bytes += len(payload)
	r.mu.Unlock()
	for _, c := range r.received {
		c.Increment()
	}
	notify(r.wake)
}

// pop moves the oldest datagram into b (the excess of a longer one is
// lost, as with any UDP read) and returns its length and sender, or false
// if none is queued.
func (r *udpFastRX) pop(b []byte) (int, udpPeer, bool) {
	r.mu.Lock()
	if r.head == len(r.queue) {
		r.mu.Unlock()
		return 0, udpPeer{}, false
	}
	d := r.queue[r.head]
	r.queue[r.head] = rxDatagram{}
	r.head++
	if r.head == len(r.queue) {
		r.queue, r.head = r.queue[:0], 0
	}
	r.bytes -= len(d.b)
	r.mu.Unlock()
	n, from := copy(b, d.b), d.from
	r.pool.Release(d.b)
	return n, from, true
}

// close drops what is queued and refuses more.
func (r *udpFastRX) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for i := r.head; i < len(r.queue); i++ {
		r.pool.Release(r.queue[i].b)
		r.queue[i] = rxDatagram{}
	}
	r.queue, r.head, r.bytes = nil, 0, 0
}

// newUDPFastRX registers a socket's receive queue with every Endpoint of s
// that has the fast path on; remote is the connected peer, zero for a
// listening socket. The caller unregisters it (unregisterUDPFastRX) when
// the socket closes. It returns nil when no Endpoint takes it, or the
// socket is bound to no single address.
func (s *Stack) newUDPFastRX(ep tcpip.Endpoint, wake chan struct{}, local, remote tcpip.FullAddress) *udpFastRX {
	if local.Addr.BitLen() == 0 || local.Addr.Unspecified() || local.Port == 0 {
		return nil
	}
	st := s.ns.Stats()
	r := &udpFastRX{
		flow:      udpFlow{local: local.Addr, remote: remote.Addr, lport: local.Port, rport: remote.Port},
		ops:       ep.SocketOptions(),
		wake:      wake,
		pool:      s.datagrams,
		received:  []*tcpip.StatCounter{st.IP.PacketsReceived, st.IP.ValidPacketsReceived, st.IP.PacketsDelivered, st.UDP.PacketsReceived},
		overflows: []*tcpip.StatCounter{st.IP.PacketsReceived, st.IP.ValidPacketsReceived, st.IP.PacketsDelivered, st.UDP.ReceiveBufferErrors},
	}
	if es, ok := ep.Stats().(*tcpip.TransportEndpointStats); ok {
		r.received = append(r.received, &es.PacketsReceived)
		r.overflows = append(r.overflows, &es.ReceiveErrors.ReceiveBufferOverflow)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var eps []*Endpoint
	for _, n := range s.nics {
		e, ok := n.ep.(*Endpoint)
		if !ok || e.opts.DisableUDPFastPath {
			continue
		}
		if eps == nil {
			// A socket's flow is on one NIC in practice: the NIC
			// counters are those of the first that takes it.
			rx := s.ns.NICInfo()[n.id].Stats.Rx
			r.nicPackets, r.nicBytes = rx.Packets, rx.Bytes
		}
		eps = append(eps, e)
	}
	if eps == nil {
		return nil
	}
	for _, e := range eps {
		e.registerUDP(r)
	}
	return r
}

// unregister removes r from every Endpoint of s and drops what it holds.
func (s *Stack) unregisterUDPFastRX(r *udpFastRX) {
	s.mu.Lock()
	for _, n := range s.nics {
		if e, ok := n.ep.(*Endpoint); ok {
			e.unregisterUDP(r)
		}
	}
	s.mu.Unlock()
	r.close()
}

func (e *Endpoint) registerUDP(r *udpFastRX) {
	e.udpSocks.Add(1) // first, so that no lookup skips the table meanwhile
	if _, replaced := e.udp.Swap(r.flow, r); replaced {
		e.udpSocks.Add(-1)
	}
}

func (e *Endpoint) unregisterUDP(r *udpFastRX) {
	if e.udp.CompareAndDelete(r.flow, r) {
		e.udpSocks.Add(-1)
	}
}

// lookupUDP finds the fast receive queue of a received frame's datagram
// (ip is the frame from the IP header on, its checksums verified) and
// returns it with the payload and sender; nil means netstack takes the
// frame.
func (e *Endpoint) lookupUDP(proto tcpip.NetworkProtocolNumber, ip []byte) (*udpFastRX, []byte, udpPeer) {
	if e.udpSocks.Load() == 0 {
		return nil, nil, udpPeer{}
	}
	var f udpFlow
	var l4 []byte
	switch proto {
	case header.IPv4ProtocolNumber:
		if len(ip) < header.IPv4MinimumSize {
			return nil, nil, udpPeer{}
		}
		h := header.IPv4(ip)
		tot := int(h.TotalLength())
		if h.HeaderLength() != header.IPv4MinimumSize || h.Protocol() != uint8(udp.ProtocolNumber) || h.More() || h.FragmentOffset() != 0 || tot > len(ip) || tot < header.IPv4MinimumSize+header.UDPMinimumSize {
			return nil, nil, udpPeer{}
		}
		f.local, f.remote = h.DestinationAddress(), h.SourceAddress()
		l4 = ip[header.IPv4MinimumSize:tot]
	case header.IPv6ProtocolNumber:
		if len(ip) < header.IPv6MinimumSize {
			return nil, nil, udpPeer{}
		}
		h := header.IPv6(ip)
		tot := header.IPv6MinimumSize + int(h.PayloadLength())
		if h.NextHeader() != uint8(udp.ProtocolNumber) || tot > len(ip) || tot < header.IPv6MinimumSize+header.UDPMinimumSize {
			return nil, nil, udpPeer{}
		}
		f.local, f.remote = h.DestinationAddress(), h.SourceAddress()
		l4 = ip[header.IPv6MinimumSize:tot]
	default:
		return nil, nil, udpPeer{}
	}
	u := header.UDP(l4)
	f.lport, f.rport = u.DestinationPort(), u.SourcePort()
	from := udpPeer{f.remote, f.rport}
	v, ok := e.udp.Load(f)
	if !ok {
		// A listening socket's, then.
		f.remote, f.rport = tcpip.Address{}, 0
		if v, ok = e.udp.Load(f); !ok {
			return nil, nil, udpPeer{}
		}
	}
	r := v.(*udpFastRX)
	n := int(u.Length())
	if n < header.UDPMinimumSize || n > len(l4) || proto == header.IPv6ProtocolNumber && u.Checksum() == 0 {
		return nil, nil, udpPeer{} // netstack counts it as malformed
	}
	return r, l4[header.UDPMinimumSize:n], from
}
