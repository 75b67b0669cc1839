package stack

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tcpSeg describes one crafted TCP packet.
type tcpSeg struct {
	v6           bool
	sport, dport uint16
	src, dst     byte // last byte of the addresses
	flags        header.TCPFlags
	ack          uint32
	win          uint16
	opts         []byte
	payload      int
}

var tsOpt = []byte{header.TCPOptionNOP, header.TCPOptionNOP, header.TCPOptionTS, header.TCPOptionTSLength, 0, 0, 0, 1, 0, 0, 0, 2}

// sackOpt: NOP NOP SACK with one block.
var sackOpt = []byte{header.TCPOptionNOP, header.TCPOptionNOP, header.TCPOptionSACK, 10, 0, 0, 0, 1, 0, 0, 0, 9}

func (s tcpSeg) build(t testing.TB) *gstack.PacketBuffer {
	t.Helper()
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: header.IPv6MinimumSize + header.TCPMinimumSize + len(s.opts),
		Payload:            buffer.MakeWithData(make([]byte, s.payload)),
	})
	thLen := header.TCPMinimumSize + len(s.opts)
	th := header.TCP(pkt.TransportHeader().Push(thLen))
	th.Encode(&header.TCPFields{
		SrcPort: s.sport, DstPort: s.dport, SeqNum: 1000, AckNum: s.ack,
		DataOffset: uint8(thLen), Flags: s.flags, WindowSize: s.win,
	})
	copy(th[header.TCPMinimumSize:], s.opts)
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	if s.v6 {
		src := netip.AddrFrom16([16]byte{0x20, 1, 0, 2, 0, 0, 0, 1, 15: s.src})
		dst := netip.AddrFrom16([16]byte{0x20, 1, 0, 2, 0, 0, 0, 1, 15: s.dst})
		ip := header.IPv6(pkt.NetworkHeader().Push(header.IPv6MinimumSize))
		ip.Encode(&header.IPv6Fields{
			PayloadLength: uint16(thLen + s.payload), TransportProtocol: header.TCPProtocolNumber,
			HopLimit: 64, SrcAddr: tcpip.AddrFrom16(src.As16()), DstAddr: tcpip.AddrFrom16(dst.As16()),
		})
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	} else {
		ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(header.IPv4MinimumSize + thLen + s.payload), TTL: 64,
			Protocol: uint8(header.TCPProtocolNumber),
			SrcAddr:  tcpip.AddrFrom4([4]byte{198, 18, 1, s.src}), DstAddr: tcpip.AddrFrom4([4]byte{198, 18, 1, s.dst}),
		})
		pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	}
	t.Cleanup(pkt.DecRef)
	return pkt
}

const (
	flagA  = header.TCPFlagAck
	flagPA = header.TCPFlagAck | header.TCPFlagPsh
)

func TestACKFilterMask(t *testing.T) {
	// base is the flow every case uses unless it says otherwise: a pure
	// ACK with timestamps, as netstack sends them.
	base := func(v6 bool) tcpSeg {
		return tcpSeg{v6: v6, sport: 5201, dport: 40000, src: 1, dst: 2, flags: flagA, ack: 100, win: 500, opts: tsOpt}
	}
	type mod func(*tcpSeg)
	with := func(v6 bool, ms ...mod) tcpSeg {
		s := base(v6)
		for _, m := range ms {
			m(&s)
		}
		return s
	}
	ack := func(n uint32) mod { return func(s *tcpSeg) { s.ack = n } }
	win := func(n uint16) mod { return func(s *tcpSeg) { s.win = n } }
	flags := func(f header.TCPFlags) mod { return func(s *tcpSeg) { s.flags = f } }
	data := func(n int) mod { return func(s *tcpSeg) { s.payload = n } }
	opts := func(o []byte) mod { return func(s *tcpSeg) { s.opts = o } }
	// dat: a data segment acking n.
	dat := func(n uint32) []mod { return []mod{ack(n), flags(flagPA), data(1)} }
	for _, v6 := range []bool{false, true} {
		fam := "v4"
		if v6 {
			fam = "v6"
		}
		for _, tc := range []struct {
			name string
			segs []tcpSeg
			want uint64
		}{
			{"ack-then-echo-data", []tcpSeg{with(v6), with(v6, flags(flagPA), data(1))}, 0b01},
			{"ack-then-higher-data", []tcpSeg{with(v6), with(v6, dat(200)...)}, 0b01},
			{"ack-then-fin-ack", []tcpSeg{with(v6), with(v6, flags(flagA|header.TCPFlagFin), ack(101))}, 0b01},
			{"ack-wraps", []tcpSeg{with(v6, ack(0xffffff00)), with(v6, dat(0x10)...)}, 0b01},
			{"three", []tcpSeg{with(v6), with(v6, ack(150)), with(v6, dat(200)...)}, 0b011},
			{"no-timestamps", []tcpSeg{with(v6, opts(nil)), with(v6, append(dat(200), opts(nil))...)}, 0b01},
			// Pure ACKs are never thinned by later pure ACKs: the
			// sender's ACK clock stays whole.
			{"ack-then-higher-ack", []tcpSeg{with(v6), with(v6, ack(200))}, 0},
			{"dup-ack-train", []tcpSeg{with(v6), with(v6), with(v6)}, 0},
			{"dup-ack-then-window-update", []tcpSeg{with(v6), with(v6, win(600))}, 0},
			{"sack-ack", []tcpSeg{with(v6, opts(sackOpt)), with(v6, dat(200)...)}, 0},
			{"later-lower-ack", []tcpSeg{with(v6, ack(200)), with(v6, dat(100)...)}, 0},
			{"later-smaller-window", []tcpSeg{with(v6), with(v6, append(dat(200), win(400))...)}, 0},
			{"other-port", []tcpSeg{with(v6), with(v6, append(dat(200), func(s *tcpSeg) { s.dport++ })...)}, 0},
			{"other-address", []tcpSeg{with(v6), with(v6, append(dat(200), func(s *tcpSeg) { s.dst = 3 })...)}, 0},
			{"other-family", []tcpSeg{with(v6), with(!v6, dat(200)...)}, 0},
			{"later-rst", []tcpSeg{with(v6), with(v6, append(dat(200), flags(flagA|header.TCPFlagRst))...)}, 0},
			{"later-no-ack-flag", []tcpSeg{with(v6), with(v6, append(dat(200), flags(header.TCPFlagPsh))...)}, 0},
			{"fin-never-dropped", []tcpSeg{with(v6, flags(flagA|header.TCPFlagFin)), with(v6, dat(200)...)}, 0},
			{"rst-never-dropped", []tcpSeg{with(v6, flags(flagA|header.TCPFlagRst)), with(v6, dat(200)...)}, 0},
			{"psh-ack-no-data-kept", []tcpSeg{with(v6, flags(flagPA)), with(v6, dat(200)...)}, 0},
			{"ece-kept", []tcpSeg{with(v6, flags(flagA|header.TCPFlagEce)), with(v6, dat(200)...)}, 0},
			{"data-never-dropped", []tcpSeg{with(v6, data(10)), with(v6, dat(200)...)}, 0},
			// A duplicate ACK between the first ACK and the data
			// keeps the first: the pair is a duplicate-ACK train.
			{"dup-then-data", []tcpSeg{with(v6), with(v6), with(v6, dat(200)...)}, 0b010},
			// Two flows interleaved: each filtered on its own.
			{"interleaved", []tcpSeg{
				with(v6), with(v6, func(s *tcpSeg) { s.sport = 1 }),
				with(v6, dat(200)...), with(v6, append(dat(300), func(s *tcpSeg) { s.sport = 1 })...),
			}, 0b0011},
		} {
			t.Run(fam+"/"+tc.name, func(t *testing.T) {
				pkts := make([]*gstack.PacketBuffer, len(tc.segs))
				for i, s := range tc.segs {
					pkts[i] = s.build(t)
				}
				if got := ackFilterMask(pkts); got != tc.want {
					t.Errorf("drop mask %b, want %b", got, tc.want)
				}
			})
		}
	}
}

// TestACKFilterNeverDropsMore feeds random batches of a few flows and
// checks every dropped packet is a pure ACK superseded by the flow's next
// kept packet, which carries data or a FIN, and is not followed by a duplicate of itself, and that nothing
// else goes.
func TestACKFilterNeverDropsMore(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	allFlags := []header.TCPFlags{flagA, flagA, flagA, flagPA, flagA | header.TCPFlagFin, flagA | header.TCPFlagRst,
		header.TCPFlagSyn, header.TCPFlagSyn | flagA, flagA | header.TCPFlagUrg, flagA | header.TCPFlagCwr}
	dropped := 0
	for round := range 300 {
		n := 1 + rng.IntN(ackFilterWindow)
		segs := make([]tcpSeg, n)
		pkts := make([]*gstack.PacketBuffer, n)
		for i := range segs {
			s := tcpSeg{
				v6: rng.IntN(2) == 0, sport: uint16(1 + rng.IntN(3)), dport: 80, src: 1, dst: byte(2 + rng.IntN(2)),
				flags: allFlags[rng.IntN(len(allFlags))], ack: uint32(rng.IntN(4)) * 100, win: uint16(500 + rng.IntN(3)),
			}
			switch rng.IntN(4) {
			case 0:
				s.opts = tsOpt
			case 1:
				s.opts = sackOpt
			}
			if rng.IntN(3) == 0 {
				s.payload = 1 + rng.IntN(100)
			}
			segs[i], pkts[i] = s, s.build(t)
		}
		mask := ackFilterMask(pkts)
		for i, s := range segs {
			isDropped := mask&(1<<uint(i)) != 0
			pure := s.flags == flagA && s.payload == 0 && (s.opts == nil || &s.opts[0] == &tsOpt[0])
			// The reference: the next packet of the same flow that
			// is kept.
			var next, imm *tcpSeg
			for j := i + 1; j < n; j++ {
				o := segs[j]
				if imm == nil && o.v6 == s.v6 && o.sport == s.sport && o.dport == s.dport && o.src == s.src && o.dst == s.dst {
					imm = &segs[j]
				}
				if o.v6 == s.v6 && o.sport == s.sport && o.dport == s.dport && o.src == s.src && o.dst == s.dst && mask&(1<<uint(j)) == 0 {
					next = &segs[j]
					break
				}
			}
			want := pure && next != nil &&
				next.flags&flagA != 0 && next.flags&(header.TCPFlagSyn|header.TCPFlagRst) == 0 &&
				(next.payload > 0 || next.flags&header.TCPFlagFin != 0) &&
				int32(next.ack-s.ack) >= 0 && next.win >= s.win &&
				!isDup(next, &s) && !isDup(imm, &s)
			if isDropped && !want {
				t.Fatalf("round %d: packet %d %+v dropped; next kept of its flow %+v", round, i, s, next)
			}
			if want && !isDropped && !slotClash(segs, i, mask) {
				t.Errorf("round %d: packet %d %+v superseded by %+v but kept", round, i, s, next)
			}
			if isDropped {
				dropped++
			}
		}
	}
	if dropped == 0 {
		t.Fatal("random batches never dropped a packet: the reference or the generator is wrong")
	}
	t.Logf("%d packets dropped", dropped)
}

// isDup reports whether o is a pure ACK with s's ack number.
func isDup(o, s *tcpSeg) bool {
	return o.ack == s.ack && o.flags == flagA && o.payload == 0 && (o.opts == nil || &o.opts[0] == &tsOpt[0])
}

// slotClash reports whether another flow between segs[i] and its flow's
// next packet may have taken its flow table slot, which makes the filter
// keep a packet it could have dropped (allowed: it only drops less).
func slotClash(segs []tcpSeg, i int, mask uint64) bool {
	info := func(s tcpSeg) ackInfo {
		a, _ := parseACK(s.build(nopTB{}))
		return a
	}
	me := info(segs[i])
	for j := i + 1; j < len(segs); j++ {
		o := info(segs[j])
		if o.sameFlow(&me) {
			return false
		}
		if o.slot() == me.slot() {
			return true
		}
	}
	return false
}

// nopTB lets slotClash build packets outside the test's cleanup.
type nopTB struct{ testing.TB }

func (nopTB) Helper()        {}
func (nopTB) Cleanup(func()) {}

func BenchmarkACKFilterMask(b *testing.B) {
	pkts := make([]*gstack.PacketBuffer, ackFilterWindow)
	for i := range pkts {
		s := tcpSeg{sport: uint16(i % 8), dport: 80, src: 1, dst: 2, flags: flagA, ack: uint32(i), win: 500, opts: tsOpt}
		if i%3 == 0 {
			s.flags, s.payload = flagPA, 100
		}
		pkts[i] = s.build(b)
	}
	b.ReportAllocs()
	for b.Loop() {
		ackFilterMask(pkts)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pkts)), "ns/pkt")
}
