package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Directions of a Drop.
const (
	DirRX = "rx"
	DirTX = "tx"
)

// Drop is how many packets were dropped for one reason. Reasons are short
// snake_case names, fit for a metric label; Dir is DirRX or DirTX.
type Drop struct {
	Dir    string
	Reason string
	Count  uint64
}

// Drops returns netstack's own drop counters by reason: packets the
// Endpoint delivered (or a socket sent) and netstack then discarded. Every
// reason is listed, zero or not, in a fixed order.
//
// netstack keeps these counters per stack, not per NIC or queue, so they
// are stack-wide; the Endpoint's per-queue drops (QueueStats.Drops) happen
// before netstack and are not in them. Where netstack counts one packet
// in two of its counters (a malformed fragment is also a malformed packet;
// a listen-queue overflow is also a dropped packet), the overlap is taken
// out, so that a dropped packet moves one reason only, with one exception
// the counters cannot tell apart: a UDP datagram whose length field does
// not fit, sent to a closed port, moves udp_malformed, udp_no_endpoint and
// l4_malformed. What netstack does not count is not here; the reasons
// whose source is not one of its counters are spelled out below.
//
// Receive side:
//   - ip_malformed: an IPv4 or IPv6 header that fails validation (length
//     fields, version, options), fragments excluded.
//   - ip_fragment_malformed: a fragment that cannot be reassembled
//     (empty, overlapping, beyond 64 KiB).
//   - ip_reassembly_timeout: datagrams whose reassembly timed out (30 s)
//     while netstack held their first fragment. netstack keeps no counter
//     for it: this is the ICMP Time Exceeded messages it sent, less those
//     for an expired TTL when forwarding. A datagram whose first fragment
//     never came, or whose message ICMP rate limiting suppressed, is not
//     counted (the fragments held are bounded by netstack's 4 MiB
//     reassembly memory).
//   - ip_invalid_source, ip_invalid_destination: a source that must not
//     be seen on the wire (multicast, broadcast, loopback); a destination
//     that is no address of the stack (while not forwarding).
//   - ip_disabled, nic_disabled: received while IP, or the NIC, was down.
//   - ip_forwarding: a packet that could not be forwarded (Forwarding).
//   - iptables: dropped by netstack's iptables (prerouting, input,
//     forward chains).
//   - unknown_l3_protocol, unknown_l4_protocol: a network or transport
//     protocol the stack does not speak.
//   - l4_malformed: a TCP or UDP header too short or inconsistent to
//     find its endpoint (a TCP data offset outside the segment).
//   - tcp_checksum, udp_checksum: a wrong transport checksum. The
//     Endpoint verifies checksums before netstack and counts them per
//     queue, so on AF_XDP these stay zero.
//   - tcp_invalid: a segment for a connection or listener that TCP
//     cannot parse (data offset), or to a non-unicast address.
//   - tcp_no_endpoint: a segment for no connection or listener (a closed
//     port), answered with RST unless it is one. netstack does not count
//     these; the Stack does, from TCP's default handler.
//   - tcp_listen_overflow: a SYN or handshake-completing ACK dropped
//     because a listener's accept queue was full.
//   - tcp_invalid_syn_cookie: an ACK carrying a wrong SYN cookie.
//   - tcp_other: other segments TCP dropped (a RST or a segment other
//     than SYN and ACK for a listener, an ACK without the negotiated
//     timestamp).
//   - udp_malformed: a UDP length field that does not fit.
//   - udp_no_endpoint: a datagram for a closed port.
//   - udp_receive_buffer: a datagram for a socket whose receive buffer
//     was full, also on the Endpoint's UDP fast path.
//   - icmp_invalid, icmp_unrecognized: an ICMP message too short or
//     inconsistent; an ICMPv6 type netstack does not handle, or a
//     router-only message.
//   - igmp_invalid: an IGMP message too short, with a wrong checksum or
//     of an unknown type.
//   - arp_malformed, arp_unknown_target: an ARP packet that does not
//     parse; a request for an address not the stack's.
//   - neighbor_confirmation_dropped: an ARP reply or neighbour
//     advertisement for no pending resolution, or with an invalid link
//     address.
//
// Transmit side:
//   - qdisc_full: packets of any protocol the NIC's queueing discipline
//     refused (queue full).
//   - ip_tx_error: IP packets the link refused for other reasons (no
//     route at write time, endpoint closed).
//   - icmp_rate_limited: ICMP errors and replies not sent because of
//     ICMP rate limiting.
//   - iptables: dropped by the output and postrouting chains.
//
// The Endpoint's own transmit drops (no frame, ring full) are per queue in
// QueueStats.Drops, since the queueing discipline hides them from netstack.
func (s *Stack) Drops() []Drop {
	st := s.ns.Stats()
	ip, tcp, udp := st.IP, st.TCP, st.UDP
	icmp4, icmp6 := st.ICMP.V4, st.ICMP.V6
	// Counters that overlap are read part first, whole last: netstack
	// increments the part before the whole, so whole-part never wraps.
	fragMalformed := ip.MalformedFragmentsReceived.Value()
	ipMalformed := ip.MalformedPacketsReceived.Value()
	ttl := ip.Forwarding.ExhaustedTTL.Value()
	timeExceeded := icmp4.PacketsSent.TimeExceeded.Value() + icmp6.PacketsSent.TimeExceeded.Value()
	overflow := tcp.ListenOverflowSynDrop.Value() + tcp.ListenOverflowAckDrop.Value()
	badCookie := tcp.ListenOverflowInvalidSynCookieRcvd.Value()
	tcpDropped := st.DroppedPackets.Value()
	qdiscFull := st.NICs.TxPacketsDroppedNoBufferSpace.Value()
	ipTXErrors := ip.OutgoingPacketErrors.Value()

	return []Drop{
		{DirRX, "ip_malformed", sub(ipMalformed, fragMalformed)},
		{DirRX, "ip_fragment_malformed", fragMalformed},
		{DirRX, "ip_reassembly_timeout", sub(timeExceeded, ttl)},
		{DirRX, "ip_invalid_source", ip.InvalidSourceAddressesReceived.Value()},
		{DirRX, "ip_invalid_destination", ip.InvalidDestinationAddressesReceived.Value()},
		{DirRX, "ip_disabled", ip.DisabledPacketsReceived.Value()},
		{DirRX, "nic_disabled", st.NICs.DisabledRx.Packets.Value()},
		{DirRX, "ip_forwarding", ip.Forwarding.Errors.Value()},
		{DirRX, "iptables", ip.IPTablesPreroutingDropped.Value() + ip.IPTablesInputDropped.Value() + ip.IPTablesForwardDropped.Value()},
		{DirRX, "unknown_l3_protocol", sumCounterMap(st.NICs.UnknownL3ProtocolRcvdPacketCounts)},
		{DirRX, "unknown_l4_protocol", sumCounterMap(st.NICs.UnknownL4ProtocolRcvdPacketCounts)},
		{DirRX, "l4_malformed", st.NICs.MalformedL4RcvdPackets.Value()},
		{DirRX, "tcp_checksum", tcp.ChecksumErrors.Value()},
		{DirRX, "tcp_invalid", tcp.InvalidSegmentsReceived.Value()},
		{DirRX, "tcp_no_endpoint", s.tcpNoEndpoint.Load()},
		{DirRX, "tcp_listen_overflow", overflow},
		{DirRX, "tcp_invalid_syn_cookie", badCookie},
		{DirRX, "tcp_other", sub(tcpDropped, overflow+badCookie)},
		{DirRX, "udp_checksum", udp.ChecksumErrors.Value()},
		{DirRX, "udp_malformed", udp.MalformedPacketsReceived.Value()},
		{DirRX, "udp_no_endpoint", udp.UnknownPortErrors.Value()},
		{DirRX, "udp_receive_buffer", udp.ReceiveBufferErrors.Value()},
		{DirRX, "icmp_invalid", icmp4.PacketsReceived.Invalid.Value() + icmp6.PacketsReceived.Invalid.Value()},
		{DirRX, "icmp_unrecognized", icmp6.PacketsReceived.Unrecognized.Value() + icmp6.PacketsReceived.RouterOnlyPacketsDroppedByHost.Value()},
		{DirRX, "igmp_invalid", st.IGMP.PacketsReceived.Invalid.Value() + st.IGMP.PacketsReceived.ChecksumErrors.Value() + st.IGMP.PacketsReceived.Unrecognized.Value()},
		{DirRX, "arp_malformed", st.ARP.MalformedPacketsReceived.Value()},
		{DirRX, "arp_unknown_target", st.ARP.RequestsReceivedUnknownTargetAddress.Value()},
		{DirRX, "neighbor_confirmation_dropped", st.NICs.Neighbor.DroppedConfirmationForNoninitiatedNeighbor.Value() + st.NICs.Neighbor.DroppedInvalidLinkAddressConfirmations.Value()},
		{DirTX, "qdisc_full", qdiscFull},
		{DirTX, "ip_tx_error", sub(ipTXErrors, qdiscFull)},
		{DirTX, "icmp_rate_limited", icmp4.PacketsSent.RateLimited.Value() + icmp6.PacketsSent.RateLimited.Value()},
		{DirTX, "iptables", ip.IPTablesOutputDropped.Value() + ip.IPTablesPostroutingDropped.Value()},
	}
}

// sub is a-b, or 0 when b is larger: two counters read one after the
// other, where b counts a subset of a (or of a and more, see Drops).
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func sumCounterMap(m *tcpip.IntegralStatCounterMap) uint64 {
	var n uint64
	for _, k := range m.Keys() {
		if c, ok := m.Get(k); ok {
			n += c.Value()
		}
	}
	return n
}

// countTCPNoEndpoint is TCP's default handler, which netstack calls for a
// segment that matched no connection or listener, before TCP answers it
// with a RST: it counts the segment (tcp_no_endpoint) and leaves it to
// TCP. Segments that TCP will find malformed are left uncounted, as
// netstack counts them itself (l4_malformed). Whatever replaces the
// handler (a tcp.Forwarder) must call this one first.
func (s *Stack) countTCPNoEndpoint(_ gstack.TransportEndpointID, pkt *gstack.PacketBuffer) bool {
	hdr := header.TCP(pkt.TransportHeader().Slice())
	nh := pkt.Network()
	_, csumValid, ok := header.TCPValid(hdr, func() uint16 { return pkt.Data().Checksum() },
		uint16(pkt.Data().Size()), nh.SourceAddress(), nh.DestinationAddress(), pkt.RXChecksumValidated)
	if ok && csumValid {
		s.tcpNoEndpoint.Add(1)
	}
	return false
}
