package nic

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/xdpnet/xdpnet/internal/pktgen"
)

// Frame helpers for the tests: enough Ethernet/IPv4/IPv6/UDP to build,
// recognise and echo the frames the lab's kernel peers exchange with a port.

const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherARP   = 0x0806
	protoUDP   = 17
	protoICMP6 = 58
)

// udpFrame is a parsed Ethernet+IP+UDP frame.
type udpFrame struct {
	src, dst netip.AddrPort
	payload  []byte
}

// parseUDP parses f as an Ethernet frame carrying IPv4 or IPv6 (no
// extension headers) and UDP.
func parseUDP(f []byte) (udpFrame, bool) {
	if len(f) < 14 {
		return udpFrame{}, false
	}
	var src, dst netip.Addr
	var l4 []byte
	switch binary.BigEndian.Uint16(f[12:]) {
	case etherIPv4:
		ip := f[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != protoUDP {
			return udpFrame{}, false
		}
		ihl := int(ip[0]&15) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if tot > len(ip) || ihl < 20 || tot < ihl+8 {
			return udpFrame{}, false
		}
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ihl:tot]
	case etherIPv6:
		ip := f[14:]
		if len(ip) < 48 || ip[0]>>4 != 6 || ip[6] != protoUDP {
			return udpFrame{}, false
		}
		pl := int(binary.BigEndian.Uint16(ip[4:]))
		if 40+pl > len(ip) || pl < 8 {
			return udpFrame{}, false
		}
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[40 : 40+pl]
	default:
		return udpFrame{}, false
	}
	ulen := int(binary.BigEndian.Uint16(l4[4:]))
	if ulen < 8 || ulen > len(l4) {
		return udpFrame{}, false
	}
	return udpFrame{
		src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:])),
		dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:])),
		payload: l4[8:ulen],
	}, true
}

// echoInPlace turns a UDP frame around: MACs, IP addresses and ports swap.
// The checksums stay valid, as one's-complement sums do not depend on the
// order of the words summed.
func echoInPlace(f []byte) {
	for i := range 6 {
		f[i], f[6+i] = f[6+i], f[i]
	}
	var a, n, l4 int
	if binary.BigEndian.Uint16(f[12:]) == etherIPv4 {
		a, n, l4 = 14+12, 4, 14+int(f[14]&15)*4
	} else {
		a, n, l4 = 14+8, 16, 14+40
	}
	for i := range n {
		f[a+i], f[a+n+i] = f[a+n+i], f[a+i]
	}
	for i := range 2 {
		f[l4+i], f[l4+2+i] = f[l4+2+i], f[l4+i]
	}
}

// buildUDP writes an Ethernet+IP+UDP frame into b and returns its length
// (the one frame builder, internal/pktgen).
func buildUDP(b []byte, srcMAC, dstMAC net.HardwareAddr, src, dst netip.AddrPort, payload []byte) int {
	f, err := pktgen.BuildUDP(pktgen.UDPFrame{SrcMAC: srcMAC, DstMAC: dstMAC, Src: src, Dst: dst, Payload: payload})
	if err != nil {
		panic(err) // the tests build lab frames only
	}
	return copy(b, f)
}
