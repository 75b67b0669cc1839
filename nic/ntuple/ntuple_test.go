package ntuple

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
)

func TestEncodeRoundTrip(t *testing.T) {
	for _, r := range []Rule{
		{Proto: UDP, Dst: netip.MustParseAddr("198.18.1.1"), DstPort: 443, Queue: 3},
		{Proto: TCP, Dst: netip.MustParseAddr("198.18.1.1"), Queue: 0},
		{Proto: UDP, Dst: netip.MustParseAddr("2001:2:0:1::1"), DstPort: 4433, Queue: 7},
		{Proto: TCP, Dst: netip.MustParseAddr("2001:2:0:1::1"), DstPort: 80, Queue: 1},
	} {
		b, err := encodeInsert(r)
		if err != nil {
			t.Fatal(err)
		}
		ne := binary.NativeEndian
		if ne.Uint32(b) != unix.ETHTOOL_SRXCLSRLINS || ne.Uint32(b[offFS+offLocation:]) != rxClsLocAny {
			t.Errorf("%v: command %#x location %#x", r, ne.Uint32(b), ne.Uint32(b[offFS+offLocation:]))
		}
		got, err := decode(b)
		if err != nil || got != r {
			t.Errorf("round trip %v: got %v, %v", r, got, err)
		}
		// Masks: the destination address is matched in full, the port only
		// when given, nothing else.
		mu := b[offFS+offMU : offFS+offRingCookie]
		ones := 0
		for _, x := range mu {
			for ; x != 0; x &= x - 1 {
				ones++
			}
		}
		want := 32
		if r.Dst.Is6() {
			want = 128
		}
		if r.DstPort != 0 {
			want += 16
		}
		if ones != want {
			t.Errorf("%v: %d mask bits set, want %d", r, ones, want)
		}
	}
}

func TestEncodeIPv4Layout(t *testing.T) {
	// The bytes `ethtool -N eth0 flow-type udp4 dst-ip 198.18.1.1 dst-port
	// 443 action 3` puts in struct ethtool_rxnfc.
	b, err := encodeInsert(Rule{Proto: UDP, Dst: netip.MustParseAddr("198.18.1.1"), DstPort: 443, Queue: 3})
	if err != nil {
		t.Fatal(err)
	}
	ne := binary.NativeEndian
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"flow_type", uint64(ne.Uint32(b[16:])), udpV4Flow},
		{"h_u.udp_ip4_spec.ip4dst", uint64(binary.BigEndian.Uint32(b[16+4+4:])), 0xc6120101},
		{"h_u.udp_ip4_spec.pdst", uint64(binary.BigEndian.Uint16(b[16+4+10:])), 443},
		{"m_u.udp_ip4_spec.ip4dst", uint64(binary.BigEndian.Uint32(b[16+76+4:])), 0xffffffff},
		{"m_u.udp_ip4_spec.ip4src", uint64(binary.BigEndian.Uint32(b[16+76:])), 0},
		{"ring_cookie", ne.Uint64(b[16+152:]), 3},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	for _, r := range []Rule{
		{Proto: UDP, Queue: 1},
		{Proto: UDP, Dst: netip.MustParseAddr("198.18.1.1"), Queue: -1},
		{Proto: 9, Dst: netip.MustParseAddr("198.18.1.1")},
	} {
		if _, err := encodeInsert(r); err == nil {
			t.Errorf("accepted %+v", r)
		}
	}
	if _, err := Install("xdpn-nonexistent-if-name-too-long", []Rule{{Dst: netip.MustParseAddr("198.18.1.1")}}); err == nil {
		t.Error("accepted an interface name longer than IFNAMSIZ")
	}
}

// TestVethNotSupported checks the error a driver without flow steering
// gives: it must wrap bpf.ErrNotSupported, and leave nothing installed.
func TestVethNotSupported(t *testing.T) {
	l := labtest.New(t, lab.Options{Queues: 2})
	err := l.Engine.Do(func() error {
		rs, err := Install(l.ClientLink.Name, []Rule{{Proto: UDP, Dst: l.ClientLink.EngineV4, DstPort: 443, Queue: 1}})
		if rs != nil {
			return errors.New("rules returned with an error")
		}
		if !errors.Is(err, bpf.ErrNotSupported) {
			return err
		}
		if _, err := Get(l.ClientLink.Name, 0); !errors.Is(err, bpf.ErrNotSupported) {
			return err
		}
		if _, err := Count(l.ClientLink.Name); !errors.Is(err, bpf.ErrNotSupported) {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("veth: want errors wrapping bpf.ErrNotSupported, got %v", err)
	}
}
