package stack

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// csumVerdict is what verifyChecksums found.
type csumVerdict uint8

const (
	csumGood       csumVerdict = iota // every checksum present was verified
	csumUnverified                    // the transport checksum cannot be checked here
	csumMalformed                     // too broken to check: netstack drops it and counts it
	// The checksum of one layer is wrong: drop. One verdict per layer, so
	// that the drop is counted by reason.
	csumBadIPv4
	csumBadTCP
	csumBadUDP
	csumBadICMP
)

// numBadChecksums is the number of csumBad verdicts.
const numBadChecksums = int(csumBadICMP-csumBadIPv4) + 1

// badChecksumIndex numbers the csumBad verdicts from 0, for counters.
func badChecksumIndex(v csumVerdict) int { return int(v - csumBadIPv4) }

// bad reports whether v says a checksum is wrong.
func (v csumVerdict) bad() bool { return v >= csumBadIPv4 }

// verifyChecksums checks the IPv4 header checksum and the TCP, UDP, ICMPv4
// or ICMPv6 checksum of one network packet (b starts at the IP header).
//
// The endpoint claims RX checksum offload to netstack, because GRO merges
// segments whose individual checksums no longer cover the merged packet, so
// this is the only place checksums are verified. Two cases cannot be
// verified per frame and are counted as unverified: IPv4 fragments (the
// transport checksum covers the reassembled datagram) and IPv6 packets whose
// transport header follows extension headers.
func verifyChecksums(proto tcpip.NetworkProtocolNumber, b []byte) csumVerdict {
	switch proto {
	case header.IPv4ProtocolNumber:
		if len(b) < header.IPv4MinimumSize {
			return csumMalformed
		}
		ip := header.IPv4(b)
		hl := int(ip.HeaderLength())
		tot := int(ip.TotalLength())
		if hl < header.IPv4MinimumSize || hl > len(b) || tot < hl || tot > len(b) {
			return csumMalformed
		}
		if !ip.IsChecksumValid() {
			return csumBadIPv4
		}
		if ip.FragmentOffset() != 0 || ip.Flags()&header.IPv4FlagMoreFragments != 0 {
			return csumUnverified
		}
		return verifyTransport(tcpip.TransportProtocolNumber(ip.Protocol()), ip.SourceAddress(), ip.DestinationAddress(), b[hl:tot], false)
	case header.IPv6ProtocolNumber:
		if len(b) < header.IPv6MinimumSize {
			return csumMalformed
		}
		ip := header.IPv6(b)
		end := header.IPv6MinimumSize + int(ip.PayloadLength())
		if end > len(b) {
			return csumMalformed
		}
		// The next-header field: extension headers end up as csumUnverified.
		return verifyTransport(tcpip.TransportProtocolNumber(ip.NextHeader()), ip.SourceAddress(), ip.DestinationAddress(), b[header.IPv6MinimumSize:end], true)
	}
	return csumGood // ARP and others carry no checksum
}

func verifyTransport(tp tcpip.TransportProtocolNumber, src, dst tcpip.Address, seg []byte, v6 bool) csumVerdict {
	var min int
	bad := csumBadTCP
	switch tp {
	case header.TCPProtocolNumber:
		min = header.TCPMinimumSize
	case header.UDPProtocolNumber:
		min, bad = header.UDPMinimumSize, csumBadUDP
		if len(seg) >= min && header.UDP(seg).Checksum() == 0 {
			if v6 {
				return csumBadUDP // RFC 8200 section 8.1: mandatory over IPv6
			}
			return csumGood // RFC 768: no checksum sent
		}
	case header.ICMPv4ProtocolNumber:
		if v6 {
			return csumUnverified
		}
		if len(seg) < header.ICMPv4MinimumSize {
			return csumMalformed
		}
		if checksum.Checksum(seg, 0) != 0xffff {
			return csumBadICMP
		}
		return csumGood
	case header.ICMPv6ProtocolNumber:
		min, bad = header.ICMPv6MinimumSize, csumBadICMP
	default:
		if v6 {
			// An extension header (or an unknown protocol): the transport
			// header, if any, is further in.
			return csumUnverified
		}
		return csumGood
	}
	if len(seg) < min {
		return csumMalformed
	}
	xsum := header.PseudoHeaderChecksum(tp, src, dst, uint16(len(seg)))
	if checksum.Checksum(seg, xsum) != 0xffff {
		return bad
	}
	return csumGood
}

// udpChecksumOffset is where the checksum sits in a UDP header (RFC 768).
const udpChecksumOffset = 6

// FinishChecksum finishes a transport checksum begun as the kernel's
// CHECKSUM_PARTIAL: seg is the TCP or UDP header and payload, its checksum
// field (at offset) holds the sum of the pseudo-header, and becomes the ones'
// complement of the sum of seg. A zero result goes as 0xffff, the same
// number in ones' complement, as RFC 768 requires of UDP. It is what a NIC
// does for a nic.Port.TxChecksum request, and what package stack does
// where the port offers none.
func FinishChecksum(seg []byte, offset int) {
	xsum := ^checksum.Checksum(seg, 0)
	if xsum == 0 {
		xsum = 0xffff
	}
	binary.BigEndian.PutUint16(seg[offset:], xsum)
}
