package pktgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Frame size limits, FCS included (see the package doc).
const (
	FCSLen  = 4
	MinSize = 64
	MaxSize = 1518

	ethLen  = 14
	ipv4Len = 20
	ipv6Len = 40
	udpLen  = 8
)

// Benchmarking ranges, the only ones this package builds frames for.
var (
	LabNet4 = netip.MustParsePrefix("198.18.0.0/15")
	LabNet6 = netip.MustParsePrefix("2001:2::/48")
)

// ErrNotLab is returned for an address outside the benchmarking ranges.
var ErrNotLab = errors.New("pktgen: address outside 198.18.0.0/15 and 2001:2::/48")

// CheckLabAddr returns an error wrapping ErrNotLab unless a is in the
// benchmarking ranges.
func CheckLabAddr(a netip.Addr) error {
	a = a.Unmap()
	if LabNet4.Contains(a) || LabNet6.Contains(a) {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrNotLab, a)
}

// MinSizeFor is the smallest frame size (FCS included) that holds an
// Ethernet, IP and UDP header: 64 for IPv4, 66 for IPv6.
func MinSizeFor(ipv6 bool) int {
	if ipv6 {
		return ethLen + ipv6Len + udpLen + FCSLen
	}
	return MinSize
}

// UDPFrame describes a UDP datagram in an Ethernet frame.
type UDPFrame struct {
	SrcMAC, DstMAC net.HardwareAddr
	// Src and Dst must be both IPv4 or both IPv6, in the benchmarking
	// ranges.
	Src, Dst netip.AddrPort
	// Size is the frame size on the wire, FCS included: MinSizeFor..MaxSize.
	// With Payload it must be 0.
	Size int
	// Payload, when not nil, is the UDP payload, and the frame is exactly
	// the headers and it (no padding to the Ethernet minimum: the sender
	// pads); else the payload is a repeating byte pattern filling Size.
	Payload []byte
}

// BuildUDP returns the frame (Size-FCSLen bytes) with complete IP and UDP
// checksums. The payload is a repeating byte pattern. IPv4 frames have DF
// set and TTL 64; IPv6 frames have hop limit 64.
func BuildUDP(f UDPFrame) ([]byte, error) {
	src, dst := f.Src.Addr().Unmap(), f.Dst.Addr().Unmap()
	if err := errors.Join(CheckLabAddr(src), CheckLabAddr(dst)); err != nil {
		return nil, err
	}
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("pktgen: source %v and destination %v differ in family", src, dst)
	}
	if len(f.SrcMAC) != 6 || len(f.DstMAC) != 6 {
		return nil, errors.New("pktgen: source and destination MAC must be 6 bytes")
	}
	v6 := src.Is6()
	size := f.Size
	if f.Payload != nil {
		if size != 0 {
			return nil, errors.New("pktgen: a frame has a Size or a Payload, not both")
		}
		if v6 {
			size = ethLen + ipv6Len + udpLen + len(f.Payload) + FCSLen
		} else {
			size = ethLen + ipv4Len + udpLen + len(f.Payload) + FCSLen
		}
		if size > MaxSize {
			return nil, fmt.Errorf("pktgen: %d-byte payload makes a frame over %d bytes", len(f.Payload), MaxSize)
		}
	} else if size < MinSizeFor(v6) || size > MaxSize {
		return nil, fmt.Errorf("pktgen: frame size %d out of range [%d, %d] (FCS included)", size, MinSizeFor(v6), MaxSize)
	}
	b := make([]byte, size-FCSLen)
	copy(b[0:6], f.DstMAC)
	copy(b[6:12], f.SrcMAC)
	ip := b[ethLen:]
	var udp []byte
	if v6 {
		binary.BigEndian.PutUint16(b[12:], 0x86dd)
		udp = ip[ipv6Len:]
		ip[0] = 6 << 4
		binary.BigEndian.PutUint16(ip[4:], uint16(len(udp)))
		ip[6] = 17 // UDP
		ip[7] = 64
		s, d := src.As16(), dst.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	} else {
		binary.BigEndian.PutUint16(b[12:], 0x0800)
		udp = ip[ipv4Len:]
		ip[0] = 4<<4 | 5
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = 64
		ip[9] = 17
		s, d := src.As4(), dst.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:ipv4Len], 0))
	}
	binary.BigEndian.PutUint16(udp[0:], f.Src.Port())
	binary.BigEndian.PutUint16(udp[2:], f.Dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	if f.Payload != nil {
		copy(udp[udpLen:], f.Payload)
	} else {
		for i := udpLen; i < len(udp); i++ {
			udp[i] = byte(i)
		}
	}
	binary.BigEndian.PutUint16(udp[6:], transportChecksum(ip, v6, 17, udp))
	return b, nil
}

// ARPRequest returns an ARP request (RFC 826) from srcMAC/src asking for
// target, broadcast, padded to the 60-byte minimum.
func ARPRequest(srcMAC net.HardwareAddr, src, target netip.Addr) []byte {
	b := make([]byte, MinSize-FCSLen)
	copy(b[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:], 0x0806)
	a := b[ethLen:]
	binary.BigEndian.PutUint16(a[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(a[2:], 0x0800) // IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1) // request
	copy(a[8:14], srcMAC)
	s, t := src.As4(), target.As4()
	copy(a[14:18], s[:])
	copy(a[24:28], t[:])
	return b
}

// NeighborSolicitation returns a neighbour solicitation (RFC 4861 section
// 4.3) from srcMAC/src for target, sent to target's solicited-node group,
// with the source link-layer address option.
func NeighborSolicitation(srcMAC net.HardwareAddr, src, target netip.Addr) []byte {
	const icmpLen = 24 + 8
	b := make([]byte, ethLen+ipv6Len+icmpLen)
	t := target.As16()
	group := [16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]}
	copy(b[0:6], []byte{0x33, 0x33, 0xff, t[13], t[14], t[15]})
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:], 0x86dd)
	ip := b[ethLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:], icmpLen)
	ip[6] = 58 // ICMPv6
	ip[7] = 255
	s := src.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], group[:])
	icmp := ip[ipv6Len:]
	icmp[0] = 135
	copy(icmp[8:24], t[:])
	icmp[24], icmp[25] = 1, 1 // source link-layer address, 8 bytes
	copy(icmp[26:32], srcMAC)
	binary.BigEndian.PutUint16(icmp[2:], transportChecksum(ip, true, 58, icmp))
	return b
}

// transportChecksum is the UDP or ICMPv6 checksum of l4 under the IP header
// ip (pseudo-header of RFC 768 / RFC 8200 section 8.1).
func transportChecksum(ip []byte, v6 bool, proto byte, l4 []byte) uint16 {
	var s uint32
	if v6 {
		s = Sum(ip[8:40], 0)
	} else {
		s = Sum(ip[12:20], 0)
	}
	s += uint32(proto) + uint32(len(l4))
	c := Checksum(l4, s)
	if c == 0 && proto == 17 {
		return 0xffff // zero means "no checksum" in UDP
	}
	return c
}

// Sum adds b to the ones' complement sum s as 16-bit big-endian words (an
// odd last byte padded with zero): a partial Internet checksum (RFC 1071),
// for pseudo-headers; Fold and Checksum finish it.
func Sum(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// Fold folds a partial sum into 16 bits (not complemented: what a sender
// leaving the rest to checksum offload stores).
func Fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
