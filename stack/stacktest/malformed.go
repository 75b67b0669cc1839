package stacktest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/stack"
)

// Batch is a batch of broken or hostile frames of one kind and the drop
// counter it must move by Want: the same frames serve the in-memory tests
// (package stack) and the lab ones (package engine, through /metrics).
type Batch struct {
	Name   string
	Frames [][]byte
	// Want is how much Reason must move: one per frame, or per datagram
	// where a datagram is several fragments.
	Want uint64
	// XDPMalformed: the steering program's header check stops these
	// frames before any AF_XDP socket (it passes them to the kernel and
	// counts them malformed); where no XDP program runs, they reach the
	// Endpoint and are counted as Reason.
	XDPMalformed bool
	// Endpoint: Reason is one of the Endpoint's per-queue reasons
	// (QueueStats.Drops); otherwise one of netstack's (Stack.Drops).
	Endpoint bool
	Dir      string
	Reason   string
	// AlsoMoves are the other reasons netstack counts these frames in
	// (by Want too), "dir/reason".
	AlsoMoves []string
	// Slow: netstack counts the drop only when its reassembly timer
	// (30 s) expires.
	Slow bool
}

// Targets are what MalformedBatches aims at: the sender's and the stack's
// MAC and IPv4 addresses (in the lab ranges), a port with a TCP listener,
// and a TCP and a UDP port with none.
type Targets struct {
	SrcMAC, DstMAC       net.HardwareAddr
	Src, Dst             netip.Addr
	OpenTCP              uint16
	ClosedTCP, ClosedUDP uint16
}

// MalformedBatches returns batches of n frames each: truncated and
// inconsistent IPv4 headers, bad IPv4, TCP, UDP and ICMP checksums,
// datagrams for closed ports, malformed fragments and fragments that never
// complete, hostile TCP options and data offsets. Frames of a batch differ
// in source port or IP ID, so that no layer takes them for duplicates.
func MalformedBatches(tg Targets, n int) ([]Batch, error) {
	var bs []Batch
	var err error
	// add builds n frames with mk(i) and adds them as batch b.
	add := func(b Batch, mk func(i int) ([][]byte, error)) {
		b.Want = uint64(n)
		for i := 0; i < n && err == nil; i++ {
			var fs [][]byte
			fs, err = mk(i)
			b.Frames = append(b.Frames, fs...)
		}
		if err == nil {
			bs = append(bs, b)
		}
	}
	build := func(i int, proto uint8, dport uint16, p pktgen.IPv4, edit func(f []byte)) ([][]byte, error) {
		p.SrcMAC, p.DstMAC, p.Proto, p.ID = tg.SrcMAC, tg.DstMAC, proto, uint16(1000+i)
		p.Src = netip.AddrPortFrom(tg.Src, uint16(41000+i))
		p.Dst = netip.AddrPortFrom(tg.Dst, dport)
		f, err := pktgen.BuildIPv4(p)
		if err != nil {
			return nil, err
		}
		if edit != nil {
			edit(f)
		}
		return [][]byte{f}, nil
	}
	const eth = 14
	syn := pktgen.IPv4{TCPFlags: pktgen.TCPSyn, Seq: 1}
	udp := pktgen.IPv4{Payload: []byte("xdpnet malformed")}

	add(Batch{Name: "truncated-ip-header", XDPMalformed: true, Dir: stack.DirRX, Reason: "ip_malformed"}, func(i int) ([][]byte, error) {
		f, err := build(i, pktgen.ProtoTCP, tg.ClosedTCP, syn, nil)
		if err != nil {
			return nil, err
		}
		return [][]byte{f[0][:eth+12]}, nil
	})
	add(Batch{Name: "ip-ihl-below-5", XDPMalformed: true, Dir: stack.DirRX, Reason: "ip_malformed"}, func(i int) ([][]byte, error) {
		return build(i, pktgen.ProtoTCP, tg.ClosedTCP, syn, func(f []byte) { f[eth] = 0x44; pktgen.SetIPv4Checksum(f) })
	})
	add(Batch{Name: "ip-ihl-beyond-total-length", Dir: stack.DirRX, Reason: "ip_malformed"}, func(i int) ([][]byte, error) {
		// A 60-byte header in a 40-byte datagram.
		return build(i, pktgen.ProtoTCP, tg.ClosedTCP, syn, func(f []byte) { f[eth] = 0x4f })
	})
	add(Batch{Name: "ip-total-length-beyond-frame", Dir: stack.DirRX, Reason: "ip_malformed"}, func(i int) ([][]byte, error) {
		return build(i, pktgen.ProtoUDP, tg.ClosedUDP, udp, func(f []byte) {
			binary.BigEndian.PutUint16(f[eth+2:], 1400)
			pktgen.SetIPv4Checksum(f)
		})
	})
	add(Batch{Name: "ip-total-length-below-header", Dir: stack.DirRX, Reason: "ip_malformed"}, func(i int) ([][]byte, error) {
		return build(i, pktgen.ProtoUDP, tg.ClosedUDP, udp, func(f []byte) {
			binary.BigEndian.PutUint16(f[eth+2:], 12)
			pktgen.SetIPv4Checksum(f)
		})
	})
	add(Batch{Name: "bad-ip-checksum", Endpoint: true, Dir: stack.DirRX, Reason: "checksum_ipv4"}, func(i int) ([][]byte, error) {
		return build(i, pktgen.ProtoUDP, tg.ClosedUDP, udp, func(f []byte) { f[eth+10] ^= 0x5a })
	})
	add(Batch{Name: "bad-tcp-checksum", Endpoint: true, Dir: stack.DirRX, Reason: "checksum_tcp"}, func(i int) ([][]byte, error) {
		return build(i, pktgen.ProtoTCP, tg.OpenTCP, syn, func(f []byte) { f[eth+20+16] ^= 0x5a })
	})
	add(Batch{Name: "bad-udp-checksum", Endpoint: true, Dir: stack.DirRX, Reason: "checksum_udp"}, func(i int) ([][]byte, error) {
		return build(i, pktgen.ProtoUDP, tg.ClosedUDP, udp, func(f []byte) { f[eth+20+6] ^= 0x5a })
	})
	add(Batch{Name: "bad-icmp-checksum", Endpoint: true, Dir: stack.DirRX, Reason: "checksum_icmp"}, func(i int) ([][]byte, error) {
		// An echo request (the UDP datagram's bytes under protocol 1,
		// type 8 code 0) with its checksum computed, then broken.
		return build(i, pktgen.ProtoUDP, tg.ClosedUDP, udp, func(f []byte) {
			f[eth+9] = 1
			pktgen.SetIPv4Checksum(f)
			icmp := f[eth+20:]
			icmp[0], icmp[1], icmp[2], icmp[3] = 8, 0, 0, 0
			binary.BigEndian.PutUint16(icmp[2:], pktgen.Checksum(icmp, 0)^0x5a5a)
		})
	})
	add(Batch{Name: "udp-closed-port", Dir: stack.DirRX, Reason: "udp_no_endpoint"}, func(i int) ([][]byte, error) {
		return build(i, pktgen.ProtoUDP, tg.ClosedUDP, udp, nil)
	})
	add(Batch{Name: "udp-length-beyond-datagram", Dir: stack.DirRX, Reason: "udp_malformed",
		AlsoMoves: []string{"rx/udp_no_endpoint", "rx/l4_malformed"}}, func(i int) ([][]byte, error) {
		return build(i, pktgen.ProtoUDP, tg.ClosedUDP, udp, func(f []byte) {
			binary.BigEndian.PutUint16(f[eth+20+4:], 200)
			pktgen.SetL4Checksum(f)
		})
	})
	add(Batch{Name: "tcp-closed-port", Dir: stack.DirRX, Reason: "tcp_no_endpoint"}, func(i int) ([][]byte, error) {
		return build(i, pktgen.ProtoTCP, tg.ClosedTCP, syn, nil)
	})
	add(Batch{Name: "unknown-l4-protocol", Dir: stack.DirRX, Reason: "unknown_l4_protocol"}, func(i int) ([][]byte, error) {
		return build(i, pktgen.ProtoUDP, tg.ClosedUDP, udp, func(f []byte) { f[eth+9] = 253; pktgen.SetIPv4Checksum(f) })
	})
	// Hostile TCP options: option lengths of 0, 1 and past the header,
	// a window scale of 255, a truncated timestamp. netstack parses
	// options leniently and takes the SYN; to a closed port it is one
	// more segment for no endpoint.
	hostile := []byte{2, 0, 3, 3, 255, 1, 8, 3, 0, 4, 40, 5, 1}
	add(Batch{Name: "tcp-hostile-options", Dir: stack.DirRX, Reason: "tcp_no_endpoint"}, func(i int) ([][]byte, error) {
		p := syn
		p.TCPOptions = hostile
		return build(i, pktgen.ProtoTCP, tg.ClosedTCP, p, nil)
	})
	// A data offset past the segment, or below the fixed header: no
	// endpoint can be found for a segment whose header does not parse,
	// and a listener's TCP cannot parse it.
	for _, c := range []struct {
		name   string
		port   uint16
		reason string
		doff   byte
	}{
		{"tcp-data-offset-beyond-segment-closed-port", tg.ClosedTCP, "l4_malformed", 15},
		{"tcp-data-offset-below-header-closed-port", tg.ClosedTCP, "l4_malformed", 2},
		{"tcp-data-offset-beyond-segment-listener", tg.OpenTCP, "tcp_invalid", 15},
		{"tcp-data-offset-below-header-listener", tg.OpenTCP, "tcp_invalid", 2},
	} {
		add(Batch{Name: c.name, Dir: stack.DirRX, Reason: c.reason}, func(i int) ([][]byte, error) {
			return build(i, pktgen.ProtoTCP, c.port, syn, func(f []byte) {
				f[eth+20+12] = c.doff << 4
				pktgen.SetL4Checksum(f)
			})
		})
	}
	big := pktgen.IPv4{Payload: make([]byte, 600)}
	add(Batch{Name: "fragment-without-payload", Dir: stack.DirRX, Reason: "ip_fragment_malformed"}, func(i int) ([][]byte, error) {
		fs, err := build(i, pktgen.ProtoUDP, tg.ClosedUDP, big, nil)
		if err != nil {
			return nil, err
		}
		f := fs[0][:eth+20]
		binary.BigEndian.PutUint16(f[eth+2:], 20)
		binary.BigEndian.PutUint16(f[eth+6:], 0x2000) // more fragments, offset 0
		pktgen.SetIPv4Checksum(f)
		return [][]byte{f}, nil
	})
	add(Batch{Name: "fragment-beyond-64k", Dir: stack.DirRX, Reason: "ip_fragment_malformed"}, func(i int) ([][]byte, error) {
		fs, err := build(i, pktgen.ProtoUDP, tg.ClosedUDP, big, nil)
		if err != nil {
			return nil, err
		}
		frags, err := pktgen.FragmentIPv4(fs[0], 256)
		if err != nil {
			return nil, err
		}
		f := frags[0]
		binary.BigEndian.PutUint16(f[eth+6:], 0x2000|8190) // offset 65520 + 256 bytes
		pktgen.SetIPv4Checksum(f)
		return [][]byte{f}, nil
	})
	add(Batch{Name: "fragments-never-complete", Dir: stack.DirRX, Reason: "ip_reassembly_timeout", Slow: true}, func(i int) ([][]byte, error) {
		fs, err := build(i, pktgen.ProtoUDP, tg.ClosedUDP, big, nil)
		if err != nil {
			return nil, err
		}
		frags, err := pktgen.FragmentIPv4(fs[0], 256)
		if err != nil {
			return nil, err
		}
		return frags[:len(frags)-1], nil // the first ones, not the last
	})
	if err != nil {
		return nil, fmt.Errorf("stacktest: malformed batches: %w", err)
	}
	return bs, nil
}
