package pktgen

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 1, 2}
	macB = net.HardwareAddr{2, 0, 0, 0, 1, 1}
)

// TestBuildUDP checks the frames with gVisor's header parsers, an
// implementation independent of this package.
func TestBuildUDP(t *testing.T) {
	for _, c := range []struct {
		src, dst string
		sizes    []int
	}{
		{"198.18.1.2", "198.18.1.1", []int{64, 65, 128, 1518}},
		{"2001:2:0:1::2", "2001:2:0:1::1", []int{66, 67, 512, 1518}},
	} {
		for _, size := range c.sizes {
			src, dst := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
			f, err := BuildUDP(UDPFrame{SrcMAC: macA, DstMAC: macB, Src: netip.AddrPortFrom(src, 1000), Dst: netip.AddrPortFrom(dst, 2000), Size: size})
			if err != nil {
				t.Fatalf("%s %d: %v", c.src, size, err)
			}
			if len(f) != size-FCSLen {
				t.Errorf("%s %d: %d bytes", c.src, size, len(f))
			}
			eth := header.Ethernet(f)
			if eth.SourceAddress() != tcpip.LinkAddress(macA) || eth.DestinationAddress() != tcpip.LinkAddress(macB) {
				t.Errorf("%s %d: MACs %s -> %s", c.src, size, eth.SourceAddress(), eth.DestinationAddress())
			}
			var (
				udp      header.UDP
				from, to tcpip.Address
			)
			if src.Is4() {
				ip := header.IPv4(f[header.EthernetMinimumSize:])
				if !ip.IsValid(len(ip)) || !ip.IsChecksumValid() || ip.TransportProtocol() != header.UDPProtocolNumber {
					t.Fatalf("%s %d: bad IPv4 header", c.src, size)
				}
				udp, from, to = ip.Payload(), ip.SourceAddress(), ip.DestinationAddress()
			} else {
				ip := header.IPv6(f[header.EthernetMinimumSize:])
				if !ip.IsValid(len(ip)) || ip.NextHeader() != uint8(header.UDPProtocolNumber) {
					t.Fatalf("%s %d: bad IPv6 header", c.src, size)
				}
				udp, from, to = ip.Payload(), ip.SourceAddress(), ip.DestinationAddress()
			}
			if from.String() != c.src || to.String() != c.dst || udp.SourcePort() != 1000 || udp.DestinationPort() != 2000 {
				t.Errorf("%s %d: %s:%d -> %s:%d", c.src, size, from, udp.SourcePort(), to, udp.DestinationPort())
			}
			if !udp.IsChecksumValid(from, to, checksum.Checksum(udp.Payload(), 0)) {
				t.Errorf("%s %d: bad UDP checksum", c.src, size)
			}
		}
	}
}

// TestBuildUDPPayload: with a Payload the frame is the headers and it,
// checksums complete, whatever its length (the sender pads).
func TestBuildUDPPayload(t *testing.T) {
	for _, c := range []struct{ src, dst string }{{"198.18.1.2", "198.18.1.1"}, {"2001:2:0:1::2", "2001:2:0:1::1"}} {
		src, dst := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
		payload := []byte("sender 1 frame 7")
		f, err := BuildUDP(UDPFrame{SrcMAC: macA, DstMAC: macB, Src: netip.AddrPortFrom(src, 1000), Dst: netip.AddrPortFrom(dst, 2000), Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		var (
			udp      header.UDP
			from, to tcpip.Address
		)
		if src.Is4() {
			ip := header.IPv4(f[header.EthernetMinimumSize:])
			if !ip.IsValid(len(ip)) || !ip.IsChecksumValid() {
				t.Fatalf("%s: bad IPv4 header", c.src)
			}
			udp, from, to = ip.Payload(), ip.SourceAddress(), ip.DestinationAddress()
		} else {
			ip := header.IPv6(f[header.EthernetMinimumSize:])
			udp, from, to = ip.Payload(), ip.SourceAddress(), ip.DestinationAddress()
		}
		if string(udp.Payload()) != string(payload) || !udp.IsChecksumValid(from, to, checksum.Checksum(udp.Payload(), 0)) {
			t.Errorf("%s: payload %q, checksum valid %v", c.src, udp.Payload(), udp.IsChecksumValid(from, to, checksum.Checksum(udp.Payload(), 0)))
		}
		if _, err := BuildUDP(UDPFrame{SrcMAC: macA, DstMAC: macB, Src: netip.AddrPortFrom(src, 1000), Dst: netip.AddrPortFrom(dst, 2000), Payload: payload, Size: 128}); err == nil {
			t.Errorf("%s: Size and Payload together accepted", c.src)
		}
	}
}

func TestBuildUDPRefuses(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, f := range []UDPFrame{
		{Src: ap("198.18.1.2:1"), Dst: ap("10.0.0.1:1"), Size: 64},            // outside the lab
		{Src: ap("192.0.2.1:1"), Dst: ap("198.18.1.1:1"), Size: 64},           // source outside
		{Src: ap("[2001:db8::1]:1"), Dst: ap("[2001:2::1]:1"), Size: 66},      // outside 2001:2::/48
		{Src: ap("[2001:2:1::1]:1"), Dst: ap("[2001:3::1]:1"), Size: 66},      // outside 2001:2::/48
		{Src: ap("198.18.1.2:1"), Dst: ap("[2001:2::1]:1"), Size: 66},         // mixed families
		{Src: ap("198.18.1.2:1"), Dst: ap("198.18.1.1:1"), Size: 63},          // too small
		{Src: ap("[2001:2::2]:1"), Dst: ap("[2001:2::1]:1"), Size: 65},        // too small for IPv6
		{Src: ap("198.18.1.2:1"), Dst: ap("198.18.1.1:1"), Size: MaxSize + 1}, // too big
	} {
		f.SrcMAC, f.DstMAC = macA, macB
		if _, err := BuildUDP(f); err == nil {
			t.Errorf("%v -> %v size %d accepted", f.Src, f.Dst, f.Size)
		}
	}
	if err := CheckLabAddr(netip.MustParseAddr("198.19.255.255")); err != nil {
		t.Error(err)
	}
	if err := CheckLabAddr(netip.MustParseAddr("198.20.0.0")); !errors.Is(err, ErrNotLab) {
		t.Errorf("198.20.0.0: %v", err)
	}
}

func TestARPAndNS(t *testing.T) {
	src4, tgt4 := netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("198.18.1.1")
	arp := header.ARP(ARPRequest(macA, src4, tgt4)[header.EthernetMinimumSize:])
	if !arp.IsValid() || arp.Op() != header.ARPRequest || netip.AddrFrom4([4]byte(arp.ProtocolAddressTarget())) != tgt4 ||
		net.HardwareAddr(arp.HardwareAddressSender()).String() != macA.String() {
		t.Errorf("bad ARP request %x", arp)
	}

	src6, tgt6 := netip.MustParseAddr("2001:2:0:1::2"), netip.MustParseAddr("2001:2:0:1::1")
	f := NeighborSolicitation(macA, src6, tgt6)
	if got := header.Ethernet(f).DestinationAddress(); got != header.EthernetAddressFromMulticastIPv6Address(header.SolicitedNodeAddr(tcpip.AddrFrom16(tgt6.As16()))) {
		t.Errorf("NS to MAC %s", got)
	}
	ip := header.IPv6(f[header.EthernetMinimumSize:])
	if ip.DestinationAddress() != header.SolicitedNodeAddr(tcpip.AddrFrom16(tgt6.As16())) || ip.HopLimit() != 255 {
		t.Errorf("NS to %s hop limit %d", ip.DestinationAddress(), ip.HopLimit())
	}
	icmp := header.ICMPv6(ip.Payload())
	want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()})
	if icmp.Type() != header.ICMPv6NeighborSolicit || icmp.Checksum() != want {
		t.Errorf("NS type %d checksum %#x, want %#x", icmp.Type(), icmp.Checksum(), want)
	}
	ns := header.NDPNeighborSolicit(icmp.MessageBody())
	if ns.TargetAddress() != tcpip.AddrFrom16(tgt6.As16()) {
		t.Errorf("NS target %s", ns.TargetAddress())
	}
}
