package pktgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// IP protocol numbers of the transport headers BuildIPv4 writes.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// TCP flags (RFC 9293 section 3.1).
const (
	TCPFin = 1 << 0
	TCPSyn = 1 << 1
	TCPRst = 1 << 2
	TCPPsh = 1 << 3
	TCPAck = 1 << 4
)

const tcpLen = 20

// IPv4 describes an Ethernet / IPv4 frame carrying a TCP segment or a UDP
// datagram, for tests that need frames a socket would not send: BuildIPv4
// makes it well formed, the test then breaks what it wants to (and
// SetIPv4Checksum or SetL4Checksum make the checksums right again where it
// should not show).
type IPv4 struct {
	SrcMAC, DstMAC net.HardwareAddr
	// Src and Dst are IPv4, in the benchmarking range.
	Src, Dst netip.AddrPort
	// Proto is ProtoTCP or ProtoUDP.
	Proto uint8
	// ID is the IP identification, which fragments of one datagram share.
	ID uint16
	// TCPFlags, Seq and TCPOptions fill the TCP header; TCPOptions is
	// padded with zeros (end of option list) to a multiple of 4 bytes, at
	// most 40.
	TCPFlags   uint8
	Seq        uint32
	TCPOptions []byte
	Payload    []byte
}

// BuildIPv4 returns the frame, without padding or FCS, with correct IPv4
// header and transport checksums, TTL 64 and no IP options.
func BuildIPv4(p IPv4) ([]byte, error) {
	src, dst := p.Src.Addr().Unmap(), p.Dst.Addr().Unmap()
	if !src.Is4() || !dst.Is4() {
		return nil, fmt.Errorf("pktgen: IPv4 frame from %v to %v", src, dst)
	}
	if err := errors.Join(CheckLabAddr(src), CheckLabAddr(dst)); err != nil {
		return nil, err
	}
	if len(p.SrcMAC) != 6 || len(p.DstMAC) != 6 {
		return nil, errors.New("pktgen: source and destination MAC must be 6 bytes")
	}
	var l4Len int
	switch p.Proto {
	case ProtoTCP:
		if len(p.TCPOptions) > 40 {
			return nil, fmt.Errorf("pktgen: %d bytes of TCP options, at most 40", len(p.TCPOptions))
		}
		l4Len = tcpLen + (len(p.TCPOptions)+3)&^3
	case ProtoUDP:
		l4Len = udpLen
	default:
		return nil, fmt.Errorf("pktgen: IP protocol %d: want TCP or UDP", p.Proto)
	}
	ipTotal := ipv4Len + l4Len + len(p.Payload)
	if ipTotal > 0xffff {
		return nil, fmt.Errorf("pktgen: IPv4 datagram of %d bytes", ipTotal)
	}
	b := make([]byte, ethLen+ipTotal)
	copy(b[0:6], p.DstMAC)
	copy(b[6:12], p.SrcMAC)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[ethLen:]
	ip[0] = 4<<4 | ipv4Len/4
	binary.BigEndian.PutUint16(ip[2:], uint16(ipTotal))
	binary.BigEndian.PutUint16(ip[4:], p.ID)
	ip[8] = 64
	ip[9] = p.Proto
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	l4 := ip[ipv4Len:]
	binary.BigEndian.PutUint16(l4[0:], p.Src.Port())
	binary.BigEndian.PutUint16(l4[2:], p.Dst.Port())
	if p.Proto == ProtoTCP {
		binary.BigEndian.PutUint32(l4[4:], p.Seq)
		l4[12] = byte(l4Len/4) << 4
		l4[13] = p.TCPFlags
		binary.BigEndian.PutUint16(l4[14:], 65535) // window
		copy(l4[tcpLen:], p.TCPOptions)
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	}
	copy(l4[l4Len:], p.Payload)
	SetIPv4Checksum(b)
	SetL4Checksum(b)
	return b, nil
}

// SetIPv4Checksum recomputes the header checksum of frame's IPv4 header
// (its IHL says how long).
func SetIPv4Checksum(frame []byte) {
	ip := frame[ethLen:]
	hl := int(ip[0]&0xf) * 4
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:hl], 0))
}

// SetL4Checksum recomputes the TCP or UDP checksum of frame (an IPv4
// frame, not a fragment) over the transport bytes the IP total length
// covers.
func SetL4Checksum(frame []byte) {
	ip := frame[ethLen:]
	hl := int(ip[0]&0xf) * 4
	l4 := ip[hl:binary.BigEndian.Uint16(ip[2:])]
	off := 16 // TCP
	if ip[9] == ProtoUDP {
		off = 6
	}
	l4[off], l4[off+1] = 0, 0
	binary.BigEndian.PutUint16(l4[off:], transportChecksum(ip, false, ip[9], l4))
}

// FragmentIPv4 cuts the IP payload of frame (built by BuildIPv4: no IP
// options) into fragments of at most size bytes, a multiple of 8, as a
// router would (RFC 791 section 3.2): each a frame of its own with the
// frame's IP header, fragment offset and more-fragments flag set, and
// header checksum fixed.
func FragmentIPv4(frame []byte, size int) ([][]byte, error) {
	if size <= 0 || size%8 != 0 {
		return nil, fmt.Errorf("pktgen: fragment size %d is not a positive multiple of 8", size)
	}
	if len(frame) < ethLen+ipv4Len || frame[ethLen] != 4<<4|ipv4Len/4 {
		return nil, errors.New("pktgen: not an IPv4 frame without options")
	}
	hdr := frame[:ethLen+ipv4Len]
	payload := frame[ethLen+ipv4Len : ethLen+int(binary.BigEndian.Uint16(frame[ethLen+2:]))]
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		n := min(size, len(payload)-off)
		f := append(append([]byte(nil), hdr...), payload[off:off+n]...)
		ip := f[ethLen:]
		binary.BigEndian.PutUint16(ip[2:], uint16(ipv4Len+n))
		fo := uint16(off / 8)
		if off+n < len(payload) {
			fo |= 0x2000 // more fragments
		}
		binary.BigEndian.PutUint16(ip[6:], fo)
		SetIPv4Checksum(f)
		out = append(out, f)
	}
	return out, nil
}

// Checksum is the Internet checksum (RFC 1071) of b, with initial added to
// the sum (a pseudo-header's, say): the ones' complement of the folded
// ones' complement sum, ready to store. UDP's rule that a zero checksum goes
// as 0xffff is the caller's.
func Checksum(b []byte, initial uint32) uint16 {
	return ^Fold(Sum(b, initial))
}
