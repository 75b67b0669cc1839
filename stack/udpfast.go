package stack

import (
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// udpFastPath sends a connected UDP socket's datagrams straight into UMEM
// frames of the Endpoint its route leaves by, skipping the netstack: no
// packet buffer, no route lookup, no qdisc goroutine per datagram. quic-go
// writes one datagram per call on any socket that is not a kernel
// *net.UDPConn, and through the netstack each call cost more than the
// encryption of the packet it carried.
//
// The frames are the ones the netstack would build: the headers come from a
// template made from the connected route and the socket's options (TTL or
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

// fastRouteRefresh is how long a header template is used before it is
// rebuilt; a route or neighbour change is noticed within it.
const fastRouteRefresh = 250 * time.Millisecond

var fastEpoch = time.Now()

// fastRoute is a header template: Ethernet, IP and UDP headers with every
// per-datagram field zero.
type fastRoute struct {
	q          *queue
	hdr        [header.EthernetMinimumSize + header.IPv6MinimumSize + header.UDPMinimumSize]byte
	hdrLen     int
	v4, df     bool
	ids        *atomic.Uint32
	noChecksum bool   // IPv4 with SO_NO_CHECK
	pseudo     uint16 // pseudo-header checksum without the length
	maxPayload int

	sent     []*tcpip.StatCounter // the netstack's sent-packet counters
	nicBytes *tcpip.StatCounter
}

// newUDPFastPath returns the fast path of a connected socket.
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
	if _, err := r.q.writeFrame(func(fr []byte) int { n = r.build(fr, b); return n }); err != nil {
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
	// known, later (from the netstack) when resolution completes.
	var linkAddr tcpip.LinkAddress
	var returned atomic.Bool
	terr = rt.ResolvedFields(func(res gstack.ResolvedFieldsResult) {
		switch {
		case res.Err != nil:
		case !returned.Load():
			linkAddr = res.RouteInfo.RemoteLinkAddress
		default:
			f.refreshAt.Store(0)
		}
	})
	returned.Store(true)
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
		r.noChecksum = f.ep.SocketOptions().GetNoChecksum()
	} else {
		header.IPv6(ip).Encode(&header.IPv6Fields{TrafficClass: tos, TransportProtocol: udp.ProtocolNumber, HopLimit: ttl, SrcAddr: f.local, DstAddr: f.remote})
	}
	header.UDP(ip[ipLen:]).Encode(&header.UDPFields{SrcPort: f.lport, DstPort: f.rport})
	r.hdrLen = header.EthernetMinimumSize + ipLen + header.UDPMinimumSize
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

// build writes the frame of payload into fr and returns its length.
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
	if r.noChecksum {
		return n
	}
	// As netstack's UDP does (RFC 768: a zero sum goes as all ones).
	xsum := checksum.Combine(r.pseudo, udpLen)
	xsum = checksum.Checksum(u[header.UDPMinimumSize:], xsum)
	xsum = u.CalculateChecksum(xsum)
	if xsum != 0xffff {
		xsum = ^xsum
	}
	u.SetChecksum(xsum)
	return n
}
