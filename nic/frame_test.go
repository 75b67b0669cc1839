package nic

import (
	"encoding/binary"
	"net"
	"net/netip"
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

// buildUDP writes an Ethernet+IP+UDP frame into b and returns its length.
func buildUDP(b []byte, srcMAC, dstMAC net.HardwareAddr, src, dst netip.AddrPort, payload []byte) int {
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	var l4 int
	var pseudo uint32
	ulen := 8 + len(payload)
	if src.Addr().Is4() {
		binary.BigEndian.PutUint16(b[12:], etherIPv4)
		ip := b[14:34]
		clear(ip)
		ip[0], ip[8], ip[9] = 0x45, 64, protoUDP
		binary.BigEndian.PutUint16(ip[2:], uint16(20+ulen))
		s4, d4 := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		binary.BigEndian.PutUint16(ip[10:], ^fold(sum(ip, 0)))
		pseudo = sum(ip[12:20], protoUDP+uint32(ulen))
		l4 = 34
	} else {
		binary.BigEndian.PutUint16(b[12:], etherIPv6)
		ip := b[14:54]
		clear(ip)
		ip[0], ip[6], ip[7] = 0x60, protoUDP, 64
		binary.BigEndian.PutUint16(ip[4:], uint16(ulen))
		s16, d16 := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:], s16[:])
		copy(ip[24:], d16[:])
		pseudo = sum(ip[8:40], protoUDP+uint32(ulen))
		l4 = 54
	}
	u := b[l4 : l4+ulen]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(ulen))
	u[6], u[7] = 0, 0
	copy(u[8:], payload)
	c := ^fold(sum(u, pseudo))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return l4 + ulen
}

func sum(b []byte, acc uint32) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		acc += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
