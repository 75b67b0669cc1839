package nic

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/internal/privtest"
)

// unfinishUDP replaces the UDP checksum of a frame buildUDP wrote with the
// sum of its pseudo-header alone, as a sender that leaves the rest to
// checksum offload writes it, and returns the UDP header's offset.
func unfinishUDP(f []byte) int {
	var l4 int
	var pseudo uint32
	if binary.BigEndian.Uint16(f[12:]) == etherIPv4 {
		l4 = 34
		pseudo = pktgen.Sum(f[26:34], 0)
	} else {
		l4 = 54
		pseudo = pktgen.Sum(f[22:54], 0)
	}
	ulen := binary.BigEndian.Uint16(f[l4+4:])
	binary.BigEndian.PutUint16(f[l4+6:], pktgen.Fold(pseudo+protoUDP+uint32(ulen)))
	return l4
}

// requireTxMetadata skips t where the kernel refused the port AF_XDP TX
// metadata (Linux 6.11+), a missing kernel feature: under CI it fails t.
func requireTxMetadata(t *testing.T, p *Port) {
	t.Helper()
	if !p.TxChecksumOffload() {
		privtest.SkipIfNotSupported(t, fmt.Errorf("kernel without AF_XDP TX metadata (6.11+): %w", ErrNotSupported))
	}
}

// TestTxChecksumOffload sends UDP frames whose checksum holds only the
// pseudo-header sum, with the engine-side veth's checksum offload off so
// that the kernel finishes what is marked CHECKSUM_PARTIAL and the peer
// verifies every checksum. Frames sent with TxChecksum must arrive intact;
// the same frames sent without it must be dropped, which shows the peer
// really checked.
func TestTxChecksumOffload(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{EngineNoTxChecksum: true})
	lk := l.ClientLink
	p := openPort(t, l, lk, nil, 0, Config{})
	requireTxMetadata(t, p)
	if p.TxHeadroom() != txMetadataLen {
		t.Fatalf("TxHeadroom %d, want %d", p.TxHeadroom(), txMetadataLen)
	}
	for _, fam := range []struct {
		name         string
		engine, peer netip.Addr
	}{
		{"ipv4", lk.EngineV4, lk.PeerV4()[0]},
		{"ipv6", lk.EngineV6, lk.PeerV6()[0]},
	} {
		t.Run(fam.name, func(t *testing.T) {
			c := clientConn(t, l, fam.peer, 0)
			dst := c.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort()
			dst = netip.AddrPortFrom(fam.peer, dst.Port())
			src := netip.AddrPortFrom(fam.engine, echoPort)
			// An odd length puts a lone byte in the sum; 1000 is even.
			payloads := [][]byte{[]byte("offloaded, odd length"), bytes.Repeat([]byte{0xa5}, 1000)}
			for i, payload := range payloads {
				d := make([]Desc, 2)
				if p.Alloc(d) != 2 {
					t.Fatal("no frames to transmit")
				}
				for j := range d {
					if off := d[j].Addr & p.frameMask; off != txMetadataLen {
						t.Fatalf("Alloc: packet %d bytes into its frame, want %d", off, txMetadataLen)
					}
					f := p.Frame(d[j])
					d[j].Len = uint32(buildUDP(f, lk.MAC, lk.PeerMAC, src, dst, payload))
					l4 := unfinishUDP(f)
					// The first goes unfinished: the peer must drop it.
					if j == 1 && !p.TxChecksum(&d[j], l4, 6) {
						t.Fatalf("payload %d: TxChecksum refused", i)
					}
				}
				if n, err := p.Transmit(d); n != 2 || err != nil {
					t.Fatalf("Transmit: %d, %v", n, err)
				}
				buf := make([]byte, 2048)
				c.SetReadDeadline(time.Now().Add(ioTimeout))
				m, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil || !bytes.Equal(buf[:m], payload) || from.Addr().Unmap() != fam.engine {
					t.Fatalf("payload %d: got %d bytes from %v (%v), want the %d sent", i, m, from, err, len(payload))
				}
			}
			// Nothing else arrives: the unfinished frames were dropped.
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if m, _, err := c.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
				t.Fatalf("a frame with an unfinished checksum arrived (%d bytes)", m)
			}
		})
	}
}

// TestTxChecksumRefused: TxChecksum says no where it cannot work, and
// Transmit refuses a packet with no room for its metadata instead of
// letting the kernel drop it and keep the frame.
func TestTxChecksumRefused(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	p := openPort(t, l, lk, nil, 0, Config{})
	requireTxMetadata(t, p)
	d := make([]Desc, 1)
	if p.Alloc(d) != 1 {
		t.Fatal("no frame")
	}
	d[0].Len = 60
	for _, c := range []struct{ start, offset int }{{-1, 6}, {34, -1}, {54, 6}, {1 << 16, 0}} {
		if p.TxChecksum(&d[0], c.start, c.offset) || d[0].Options != 0 {
			t.Errorf("TxChecksum(start %d, offset %d) of a 60-byte packet accepted", c.start, c.offset)
		}
	}
	d[0].Addr -= txMetadataLen
	if p.TxChecksum(&d[0], 34, 6) {
		t.Error("TxChecksum accepted a packet at its frame's start")
	}
	if n, err := p.Transmit(d); n != 0 || !errors.Is(err, ErrBadDesc) {
		t.Errorf("Transmit of a packet at its frame's start: %d, %v; want 0, ErrBadDesc", n, err)
	}
	p.Release(d)

	off := openPort(t, l, l.BackendLink, nil, 0, Config{NoTxChecksum: true})
	if off.TxChecksumOffload() || off.TxHeadroom() != 0 {
		t.Errorf("NoTxChecksum: offload %v, headroom %d", off.TxChecksumOffload(), off.TxHeadroom())
	}
	if off.Alloc(d) != 1 || d[0].Addr&off.frameMask != 0 || off.TxChecksum(&d[0], 34, 6) {
		t.Errorf("NoTxChecksum: Alloc gave %+v, or TxChecksum accepted", d[0])
	}
	off.Release(d)
}
