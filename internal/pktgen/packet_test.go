package pktgen

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestBuildIPv4 checks TCP and UDP frames with gVisor's header parsers and
// checksum, an implementation independent of this package.
func TestBuildIPv4(t *testing.T) {
	src := netip.MustParseAddrPort("198.18.1.2:40000")
	dst := netip.MustParseAddrPort("198.18.1.1:80")
	payload := []byte("hello, odd length")
	for _, p := range []IPv4{
		{Proto: ProtoTCP, TCPFlags: TCPSyn, Seq: 7, TCPOptions: []byte{2, 4, 5, 0xb4, 1}, Payload: payload},
		{Proto: ProtoTCP, TCPFlags: TCPAck},
		{Proto: ProtoUDP, Payload: payload},
		{Proto: ProtoUDP},
	} {
		p.SrcMAC, p.DstMAC, p.Src, p.Dst, p.ID = macA, macB, src, dst, 99
		f, err := BuildIPv4(p)
		if err != nil {
			t.Fatal(err)
		}
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		if !ip.IsValid(len(ip)) || !ip.IsChecksumValid() || ip.ID() != 99 || int(ip.Protocol()) != int(p.Proto) {
			t.Fatalf("%+v: bad IPv4 header % x", p, ip[:20])
		}
		l4 := ip.Payload()
		xsum := header.PseudoHeaderChecksum(ip.TransportProtocol(), ip.SourceAddress(), ip.DestinationAddress(), uint16(len(l4)))
		if checksum.Checksum(l4, xsum) != 0xffff {
			t.Errorf("%+v: bad transport checksum", p)
		}
		var got []byte
		if p.Proto == ProtoTCP {
			tcp := header.TCP(l4)
			if tcp.Flags() != header.TCPFlags(p.TCPFlags) || tcp.SequenceNumber() != p.Seq || tcp.DestinationPort() != 80 ||
				int(tcp.DataOffset()) != 20+(len(p.TCPOptions)+3)&^3 || !bytes.HasPrefix(tcp.Options(), p.TCPOptions) {
				t.Errorf("%+v: TCP header % x", p, tcp[:tcp.DataOffset()])
			}
			got = tcp.Payload()
		} else {
			udp := header.UDP(l4)
			if int(udp.Length()) != len(l4) || udp.SourcePort() != 40000 {
				t.Errorf("%+v: UDP header % x", p, udp[:8])
			}
			got = udp.Payload()
		}
		if !bytes.Equal(got, p.Payload) {
			t.Errorf("%+v: payload %q", p, got)
		}
	}
	if _, err := BuildIPv4(IPv4{SrcMAC: macA, DstMAC: macB, Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: dst, Proto: ProtoUDP}); !errors.Is(err, ErrNotLab) {
		t.Errorf("address outside the lab ranges: %v", err)
	}
}

// TestFragmentIPv4 cuts a datagram and puts the pieces back together.
func TestFragmentIPv4(t *testing.T) {
	f, err := BuildIPv4(IPv4{SrcMAC: macA, DstMAC: macB, Src: netip.MustParseAddrPort("198.18.1.2:1"),
		Dst: netip.MustParseAddrPort("198.18.1.1:2"), Proto: ProtoUDP, ID: 5, Payload: bytes.Repeat([]byte{1, 2, 3}, 100)})
	if err != nil {
		t.Fatal(err)
	}
	frags, err := FragmentIPv4(f, 128)
	if err != nil {
		t.Fatal(err)
	}
	if len(frags) != 3 { // 308 bytes of UDP: 128 + 128 + 52
		t.Fatalf("%d fragments", len(frags))
	}
	var whole []byte
	for i, fr := range frags {
		ip := header.IPv4(fr[header.EthernetMinimumSize:])
		if !ip.IsValid(len(ip)) || !ip.IsChecksumValid() || ip.ID() != 5 {
			t.Fatalf("fragment %d: bad header", i)
		}
		if int(ip.FragmentOffset()) != len(whole) || ip.More() != (i < len(frags)-1) {
			t.Errorf("fragment %d: offset %d more %v", i, ip.FragmentOffset(), ip.More())
		}
		whole = append(whole, ip.Payload()...)
	}
	if !bytes.Equal(whole, f[header.EthernetMinimumSize+header.IPv4MinimumSize:]) {
		t.Error("fragments do not add up to the datagram")
	}
	if _, err := FragmentIPv4(f, 100); err == nil {
		t.Error("fragment size 100 accepted")
	}
}
