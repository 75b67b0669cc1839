package benchsuite

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/xdpnet/xdpnet/internal/pktgen"
)

// Test frames are Ethernet / IPv4 / UDP with correct checksums, padded to
// the RFC 2544 size less the FCS. Probe frames carry probeMagic and the
// send time in the first UDP payload bytes; load frames carry zeros there.
const (
	ethLen, ipv4Len, udpLen = 14, 20, 8
	payloadOff              = ethLen + ipv4Len + udpLen
	probeMagic              = 0x7864706e_70726f62 // "xdpnprob"
	probeLen                = 16                  // magic, nanoseconds since the trial's epoch
	minFrame                = payloadOff + probeLen
	benchSrcPort            = 40000
	benchDstPort            = 9 // discard
)

// Flow names the addresses of a test flow (the lab's, or a NIC's under
// hwtest).
type Flow struct {
	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.Addr // IPv4
	SrcPort        uint16
	DstPort        uint16
}

// Frame returns an Ethernet / IPv4 / UDP frame of the flow with correct
// checksums, size-FCSLen bytes long for an RFC 2544 frame size (FCS
// included).
func (f Flow) Frame(size int) ([]byte, error) {
	n := size - FCSLen
	if n < minFrame || n > 9000 {
		return nil, fmt.Errorf("frame size %d: want %d to 9004 bytes", size, minFrame+FCSLen)
	}
	if !f.Src.Is4() || !f.Dst.Is4() || len(f.SrcMAC) != 6 || len(f.DstMAC) != 6 {
		return nil, fmt.Errorf("test flow needs IPv4 addresses and Ethernet MACs: %+v", f)
	}
	b := make([]byte, n)
	copy(b[0:6], f.DstMAC)
	copy(b[6:12], f.SrcMAC)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[ethLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(n-ethLen))
	ip[8] = 64 // TTL
	ip[9] = 17 // UDP
	src, dst := f.Src.As4(), f.Dst.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], pktgen.Checksum(ip[:ipv4Len], 0))
	udp := ip[ipv4Len:]
	binary.BigEndian.PutUint16(udp[0:], f.SrcPort)
	binary.BigEndian.PutUint16(udp[2:], f.DstPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(n-ethLen-ipv4Len))
	setUDPChecksum(b)
	return b, nil
}

// stampProbe writes the probe magic and t (nanoseconds since the trial's
// epoch) into a copy of frame and fixes the UDP checksum.
func stampProbe(frame []byte, t time.Duration) []byte {
	p := append([]byte(nil), frame...)
	binary.BigEndian.PutUint64(p[payloadOff:], probeMagic)
	binary.BigEndian.PutUint64(p[payloadOff+8:], uint64(t))
	setUDPChecksum(p)
	return p
}

// probeStamp returns the send time of a probe frame (as an offset from the
// trial's epoch), or false for any other frame. Frames are read by the
// receiver, so this tolerates anything.
func probeStamp(frame []byte) (time.Duration, bool) {
	if len(frame) < minFrame || binary.BigEndian.Uint64(frame[payloadOff:]) != probeMagic {
		return 0, false
	}
	return time.Duration(binary.BigEndian.Uint64(frame[payloadOff+8:])), true
}

// probePayload is probeStamp for a UDP payload (a kernel socket's view).
func probePayload(p []byte) (time.Duration, bool) {
	if len(p) < probeLen || binary.BigEndian.Uint64(p) != probeMagic {
		return 0, false
	}
	return time.Duration(binary.BigEndian.Uint64(p[8:])), true
}

func setUDPChecksum(b []byte) {
	ip := b[ethLen:]
	udp := ip[ipv4Len:]
	udp[6], udp[7] = 0, 0
	// Pseudo-header: addresses, protocol, UDP length.
	var sum uint32
	for i := 12; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	sum += 17 + uint32(len(udp))
	c := pktgen.Checksum(udp, sum)
	if c == 0 {
		c = 0xffff // RFC 768: zero means "no checksum"
	}
	binary.BigEndian.PutUint16(udp[6:], c)
}
