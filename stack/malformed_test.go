package stack_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// tcpFrame builds an Ethernet frame from B's MAC to dstMAC carrying a TCP
// SYN from AddrB4:40000 to AddrA4:port with payload, with correct
// checksums; mutate edits it afterwards.
func tcpFrame(dstMAC []byte, port uint16, payload []byte, mutate func(f []byte)) []byte {
	return ipv4Frame(dstMAC, header.TCPProtocolNumber, port, payload, mutate)
}

// udpFrame is tcpFrame with a UDP datagram.
func udpFrame(dstMAC []byte, port uint16, payload []byte, mutate func(f []byte)) []byte {
	return ipv4Frame(dstMAC, header.UDPProtocolNumber, port, payload, mutate)
}

func ipv4Frame(dstMAC []byte, proto tcpip.TransportProtocolNumber, port uint16, payload []byte, mutate func(f []byte)) []byte {
	f, err := pktgen.BuildIPv4(pktgen.IPv4{
		SrcMAC: stacktest.MACB, DstMAC: dstMAC,
		Src: netip.AddrPortFrom(stacktest.AddrB4, 40000), Dst: netip.AddrPortFrom(stacktest.AddrA4, port),
		Proto: uint8(proto), TCPFlags: pktgen.TCPSyn, Seq: 1, Payload: payload,
	})
	if err != nil {
		panic(err) // the arguments are the tests' own
	}
	if mutate != nil {
		mutate(f)
	}
	return f
}

// injector feeds frames to a's receive path and waits until each is taken.
// The receive goroutine counts a frame as received before it hands it up,
// so drops counted on the way up (and netstack's own counters) may lag
// inject's return: tests wait for them with testutil.Eventually.
type injector struct {
	t testing.TB
	r *stacktest.XDPResult
}

func newInjector(t testing.TB) *injector {
	return &injector{t: t, r: stacktest.NewXDPPair(t, stacktest.XDPOptions{})}
}

func (in *injector) inject(f []byte) {
	in.t.Helper()
	want := stack.Total(in.r.EPA.Stats()).RXFrames + 1
	in.r.Wires[0].A.Inject(f)
	if !testutil.Eventually(func() bool { return stack.Total(in.r.EPA.Stats()).RXFrames >= want }) {
		in.t.Fatalf("frame of %d bytes not received within 10s", len(f))
	}
}

func TestMalformedFramesCounted(t *testing.T) {
	in := newInjector(t)
	ns := in.r.A.Netstack()
	macA := []byte(stacktest.MACA)
	for _, tc := range []struct {
		name  string
		frame []byte
		check func(before, after stack.QueueStats) bool
	}{
		{"empty", nil, func(b, a stack.QueueStats) bool { return a.RXDropShort == b.RXDropShort+1 }},
		{"short", []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, func(b, a stack.QueueStats) bool { return a.RXDropShort == b.RXDropShort+1 }},
		{"other-host", tcpFrame([]byte{0x02, 9, 9, 9, 9, 9}, 80, nil, nil), func(b, a stack.QueueStats) bool { return a.RXDropOtherHost == b.RXDropOtherHost+1 }},
		{"bad-tcp-checksum", tcpFrame(macA, 80, []byte("x"), func(f []byte) { f[len(f)-1] ^= 0xff }), func(b, a stack.QueueStats) bool { return a.RXDropChecksumTCP == b.RXDropChecksumTCP+1 }},
		{"bad-ip-checksum", tcpFrame(macA, 80, nil, func(f []byte) { f[header.EthernetMinimumSize+8]-- }), func(b, a stack.QueueStats) bool { return a.RXDropChecksumIPv4 == b.RXDropChecksumIPv4+1 }},
	} {
		before := stack.Total(in.r.EPA.Stats())
		in.inject(tc.frame)
		var after stack.QueueStats
		if !testutil.Eventually(func() bool { after = stack.Total(in.r.EPA.Stats()); return tc.check(before, after) }) {
			t.Errorf("%s: not counted: before %+v after %+v", tc.name, before, after)
		}
	}
	// Frames too broken to checksum go up and netstack drops and counts them.
	malformed := func() uint64 {
		return ns.Stats().IP.MalformedPacketsReceived.Value() + ns.Stats().IP.MalformedFragmentsReceived.Value()
	}
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"truncated-ip", tcpFrame(macA, 80, nil, nil)[:header.EthernetMinimumSize+10]},
		{"ip-length-beyond-frame", tcpFrame(macA, 80, nil, func(f []byte) {
			ip := header.IPv4(f[header.EthernetMinimumSize:])
			ip.SetTotalLength(1400)
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		})},
		{"bad-ihl", tcpFrame(macA, 80, nil, func(f []byte) { f[header.EthernetMinimumSize] = 0x42 })},
	} {
		before := malformed()
		in.inject(tc.frame)
		testutil.Eventually(func() bool { return malformed() > before })
		if malformed() != before+1 {
			t.Errorf("%s: netstack's malformed counter went %d -> %d", tc.name, before, malformed())
		}
	}
	// A datagram for a socket on the UDP fast path whose UDP length does
	// not fit is left to netstack, which counts it; a good one arrives.
	sock, err := in.r.A.ListenUDP(netip.AddrPortFrom(stacktest.AddrA4, 5353))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	for _, udpLen := range []uint16{4, 200} {
		bad := ns.Stats().UDP.MalformedPacketsReceived.Value()
		in.inject(udpFrame(macA, 5353, []byte("bad"), func(f []byte) {
			u := header.UDP(f[header.EthernetMinimumSize+header.IPv4MinimumSize:])
			u.SetLength(udpLen)
			u.SetChecksum(0) // none: the length, not the checksum, is wrong
		}))
		if !testutil.Eventually(func() bool { return ns.Stats().UDP.MalformedPacketsReceived.Value() > bad }) {
			t.Errorf("UDP length %d: not counted as malformed", udpLen)
		}
	}
	fast := stack.Total(in.r.EPA.Stats()).RXUDPFast
	in.inject(udpFrame(macA, 5353, []byte("good"), nil))
	buf := make([]byte, 64)
	sock.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _, err := sock.ReadFrom(buf); err != nil || string(buf[:n]) != "good" || stack.Total(in.r.EPA.Stats()).RXUDPFast != fast+1 {
		t.Errorf("good datagram: %q, %v; fast path took %d", buf[:n], err, stack.Total(in.r.EPA.Stats()).RXUDPFast-fast)
	}

	// A valid SYN to a closed port is answered, so the path still works.
	rst := ns.Stats().TCP.ResetsSent.Value()
	in.inject(tcpFrame(macA, 81, nil, nil))
	if !testutil.Eventually(func() bool { return ns.Stats().TCP.ResetsSent.Value() > rst }) {
		t.Error("a valid SYN after the garbage got no RST")
	}
	// And a real connection still works.
	l, err := in.r.A.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, 9000))
	if err != nil {
		t.Fatal(err)
	}
	serveHashAndSend(t, l, 1<<16)
	transfer(t, in.r.B, netip.AddrPortFrom(stacktest.AddrA4, 9000), 1<<16, 1<<16)
}

// FuzzEndpointRX feeds arbitrary frames to the receive path: no panic, each
// frame taken and either delivered or counted, and the stack keeps working.
func FuzzEndpointRX(f *testing.F) {
	macA := []byte(stacktest.MACA)
	f.Add([]byte{})
	f.Add(tcpFrame(macA, 80, []byte("hello"), nil))
	f.Add(tcpFrame(macA, 80, nil, nil)[:20])
	f.Add(tcpFrame(macA, 80, nil, func(b []byte) { b[12], b[13] = 0x86, 0xdd }))
	f.Add(tcpFrame(macA, 80, nil, func(b []byte) { b[12], b[13] = 0x08, 0x06 }))
	f.Add(tcpFrame(macA, 80, make([]byte, 1400), func(b []byte) { b[header.EthernetMinimumSize+6] = 0x20 })) // more fragments
	rnd := rand.New(rand.NewPCG(9, 9))
	for range 4 {
		b := make([]byte, rnd.IntN(1600))
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		copy(b, macA)
		f.Add(b)
	}
	f.Add(udpFrame(macA, 5353, []byte("hello"), nil))
	f.Add(udpFrame(macA, 5353, []byte("hello"), func(b []byte) { b[len(b)-9] = 0xff })) // UDP length beyond the frame
	in := newInjector(f)
	// A socket on the UDP fast path, so that its parsing is fuzzed too.
	sock, err := in.r.A.ListenUDP(netip.AddrPortFrom(stacktest.AddrA4, 5353))
	if err != nil {
		f.Fatal(err)
	}
	defer sock.Close()
	f.Fuzz(func(t *testing.T, frame []byte) {
		in.t = t
		in.inject(frame)
	})
}
