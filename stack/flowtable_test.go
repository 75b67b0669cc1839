package stack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// synPacket builds a network packet carrying a TCP segment with flags from
// remote to local.
func synPacket(t *testing.T, local, remote netip.AddrPort, flags header.TCPFlags) (tcpip.NetworkProtocolNumber, []byte) {
	t.Helper()
	tcp := make([]byte, header.TCPMinimumSize)
	header.TCP(tcp).Encode(&header.TCPFields{
		SrcPort: remote.Port(), DstPort: local.Port(), Flags: flags, DataOffset: header.TCPMinimumSize,
	})
	if local.Addr().Is4() {
		b := make([]byte, header.IPv4MinimumSize, header.IPv4MinimumSize+len(tcp))
		header.IPv4(b).Encode(&header.IPv4Fields{
			TotalLength: uint16(header.IPv4MinimumSize + len(tcp)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
			SrcAddr: toAddr(remote.Addr()), DstAddr: toAddr(local.Addr()),
		})
		return header.IPv4ProtocolNumber, append(b, tcp...)
	}
	b := make([]byte, header.IPv6MinimumSize, header.IPv6MinimumSize+len(tcp))
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength: uint16(len(tcp)), TransportProtocol: header.TCPProtocolNumber, HopLimit: 64,
		SrcAddr: toAddr(remote.Addr()), DstAddr: toAddr(local.Addr()),
	})
	return header.IPv6ProtocolNumber, append(b, tcp...)
}

func TestFlowTable(t *testing.T) {
	e := &Endpoint{queues: make([]*queue, 4), flows: newFlowTable()}
	local4 := netip.MustParseAddrPort("198.18.1.1:443")
	local6 := netip.MustParseAddrPort("[2001:2:0:1::1]:443")
	remote4 := netip.MustParseAddrPort("198.18.1.2:40000")
	remote6 := netip.MustParseAddrPort("[2001:2:0:1::2]:40000")

	for _, f := range []struct{ local, remote netip.AddrPort }{{local4, remote4}, {local6, remote6}} {
		if _, ok := e.FlowQueue(f.local, f.remote); ok {
			t.Errorf("%v: unknown flow found", f.remote)
		}
		proto, b := synPacket(t, f.local, f.remote, header.TCPFlagSyn)
		e.flows.noteSYN(proto, b, 3)
		if q, ok := e.FlowQueue(f.local, f.remote); !ok || q != 3 {
			t.Errorf("%v: FlowQueue = %d, %v; want 3, true", f.remote, q, ok)
		}
		// The reverse direction and another port are other flows.
		if _, ok := e.FlowQueue(f.remote, f.local); ok {
			t.Errorf("%v: reversed flow found", f.remote)
		}
		other := netip.AddrPortFrom(f.remote.Addr(), f.remote.Port()+1)
		if _, ok := e.FlowQueue(f.local, other); ok {
			t.Errorf("%v: flow of another port found", other)
		}
		// A later SYN of the same flow (a reused port) moves it.
		e.flows.noteSYN(proto, b, 1)
		if q, ok := e.FlowQueue(f.local, f.remote); !ok || q != 1 {
			t.Errorf("%v: after a new SYN FlowQueue = %d, %v; want 1, true", f.remote, q, ok)
		}
	}
	// IPv4-mapped addresses name the IPv4 flow.
	if q, ok := e.FlowQueue(netip.AddrPortFrom(netip.AddrFrom16(local4.Addr().As16()), local4.Port()),
		netip.AddrPortFrom(netip.AddrFrom16(remote4.Addr().As16()), remote4.Port())); !ok || q != 1 {
		t.Errorf("v4-mapped: FlowQueue = %d, %v; want 1, true", q, ok)
	}

	// Only a SYN without ACK is recorded; nothing else, however broken,
	// is, and nothing panics.
	r2 := netip.MustParseAddrPort("198.18.1.3:40000")
	for _, flags := range []header.TCPFlags{header.TCPFlagSyn | header.TCPFlagAck, header.TCPFlagAck, header.TCPFlagRst} {
		proto, b := synPacket(t, local4, r2, flags)
		e.flows.noteSYN(proto, b, 2)
	}
	proto, b := synPacket(t, local4, r2, header.TCPFlagSyn)
	for n := range len(b) {
		e.flows.noteSYN(proto, b[:n], 2)
	}
	frag := append([]byte(nil), b...)
	header.IPv4(frag).SetFlagsFragmentOffset(0, 8)
	e.flows.noteSYN(proto, frag, 2)
	long := append([]byte(nil), b...)
	long[0] = 0x4f // header longer than the packet
	e.flows.noteSYN(proto, long, 2)
	e.flows.noteSYN(header.ARPProtocolNumber, b, 2)
	if q, ok := e.FlowQueue(local4, r2); ok {
		t.Errorf("FlowQueue of a flow without a recorded SYN = %d", q)
	}

	// The table is bounded: later SYNs evict, and lookups then miss rather
	// than answer wrong.
	for i := range 4 * flowTableSize {
		r := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(2 + i%200)}), uint16(1024+i/200))
		p, b := synPacket(t, local4, r, header.TCPFlagSyn)
		e.flows.noteSYN(p, b, i%4)
	}
	wrong := 0
	for i := range 4 * flowTableSize {
		r := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(2 + i%200)}), uint16(1024+i/200))
		if q, ok := e.FlowQueue(local4, r); ok && q != i%4 {
			wrong++
		}
	}
	if wrong != 0 {
		t.Errorf("%d lookups answered a wrong queue", wrong)
	}

	if n := testing.AllocsPerRun(100, func() {
		e.FlowQueue(local6, remote6)
		e.flows.noteSYN(proto, b, 1)
	}); n != 0 {
		t.Errorf("FlowQueue and noteSYN allocate %v times", n)
	}

	single := &Endpoint{queues: make([]*queue, 1)}
	if q, ok := single.FlowQueue(local4, remote4); !ok || q != 0 {
		t.Errorf("single queue: FlowQueue = %d, %v; want 0, true", q, ok)
	}
}
