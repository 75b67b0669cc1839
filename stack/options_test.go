package stack_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// syncBuffer is a bytes.Buffer safe for the capture's concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// TestCapture records a transfer and checks that the pcap stream holds one
// well-formed record per frame the endpoint received or sent.
func TestCapture(t *testing.T) {
	var buf syncBuffer
	capt, err := stack.NewCapture(&buf, 128)
	if err != nil {
		t.Fatal(err)
	}
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{A: stack.EndpointOptions{Capture: capt}})
	l, err := r.A.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, 80))
	if err != nil {
		t.Fatal(err)
	}
	serveHashAndSend(t, l, 1<<20)
	transfer(t, r.B, netip.AddrPortFrom(stacktest.AddrA4, 80), 1<<20, 1<<20)
	_ = r.A.Close() // no frames after this
	st := stack.Total(r.EPA.Stats())
	if err := capt.Err(); err != nil {
		t.Fatal(err)
	}
	b := buf.b.Bytes()
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("bad pcap header % x", b[:min(len(b), 24)])
	}
	var n uint64
	var sawSYN bool
	for off := 24; off < len(b); n++ {
		if off+16 > len(b) {
			t.Fatalf("truncated record header at %d", off)
		}
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		orig := int(binary.LittleEndian.Uint32(b[off+12:]))
		if incl > 128 || incl > orig || off+16+incl > len(b) {
			t.Fatalf("record %d: incl %d orig %d", n, incl, orig)
		}
		f := b[off+16 : off+16+incl]
		if len(f) >= 14+20+20 && header.Ethernet(f).Type() == header.IPv4ProtocolNumber {
			if header.TCP(f[34:]).Flags()&header.TCPFlagSyn != 0 {
				sawSYN = true
			}
		}
		off += 16 + incl
	}
	if n != capt.Frames() || n != st.RXFrames+st.TXFrames {
		t.Errorf("%d records, capture counted %d, endpoint moved %d frames", n, capt.Frames(), st.RXFrames+st.TXFrames)
	}
	if !sawSYN {
		t.Error("no SYN in the capture")
	}
}

// TestTXBackpressure stalls a's TX ring mid-transfer: sends wait TXWait,
// then drop and count; once the ring drains, TCP retransmits and the
// transfer completes intact, with every frame back home.
func TestTXBackpressure(t *testing.T) {
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{A: stack.EndpointOptions{TXWait: time.Millisecond}})
	l, err := r.A.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, 80))
	if err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	serveHashAndSend(t, l, size)
	done := make(chan struct{})
	go func() {
		defer close(done)
		transfer(t, r.B, netip.AddrPortFrom(stacktest.AddrA4, 80), size, size)
	}()
	waitDuringTransfer(t, "100 frames sent", done, func() {}, func() bool {
		return stack.Total(r.EPA.Stats()).TXFrames >= 100
	})
	unstall := func() { r.Wires[0].A.Stall(false) }
	r.Wires[0].A.Stall(true)
	waitDuringTransfer(t, "a send dropped at the stalled ring", done, unstall, func() bool {
		return stack.Total(r.EPA.Stats()).TXDropRingFull > 0
	})
	unstall()
	<-done
	st := stack.Total(r.EPA.Stats())
	if st.TXWaits == 0 || st.TXDropRingFull == 0 {
		t.Errorf("stall not seen: %+v", st)
	}
	checkFramesHome(t, r)
}

// waitDuringTransfer fails t unless cond holds within testutil.Timeout,
// while a transfer runs that closes done when it ends. Before failing it
// undoes the fault (release) and waits for the transfer, so that the
// transfer's goroutine never reports to t after the test has ended.
func waitDuringTransfer(t *testing.T, what string, done <-chan struct{}, release func(), cond func() bool) {
	t.Helper()
	if !testutil.Eventually(cond) {
		release()
		<-done
		t.Fatalf("timed out after %v waiting for %s", testutil.Timeout, what)
	}
}

// TestXDPLinkDown cuts the in-memory wire: sends report the link down and
// are counted; TCP recovers after.
func TestXDPLinkDown(t *testing.T) {
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{})
	l, err := r.A.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, 80))
	if err != nil {
		t.Fatal(err)
	}
	serveHashAndSend(t, l, 1<<20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		transfer(t, r.B, netip.AddrPortFrom(stacktest.AddrA4, 80), 1<<20, 1<<20)
	}()
	waitDuringTransfer(t, "50 frames sent", done, func() {}, func() bool {
		return stack.Total(r.EPB.Stats()).TXFrames >= 50
	})
	up := func() { r.SetUp(true) }
	r.SetUp(false)
	waitDuringTransfer(t, "a send dropped with the link down", done, up, func() bool {
		return stack.Total(r.EPB.Stats()).TXDropLinkDown+stack.Total(r.EPA.Stats()).TXDropLinkDown > 0
	})
	up()
	<-done
	checkFramesHome(t, r)
}

// TestSYNCookiesUnderFlood floods a listener with a backlog of 8 with SYNs
// from unanswering sources: it must switch to SYN cookies and still accept a
// real client.
func TestSYNCookiesUnderFlood(t *testing.T) {
	in := &injector{t: t, r: stacktest.NewXDPPair(t, stacktest.XDPOptions{StackA: stack.Options{TCP: stack.TCPOptions{ListenBacklog: 8}}})}
	l, err := in.r.A.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, 80))
	if err != nil {
		t.Fatal(err)
	}
	serveHashAndSend(t, l, 10)
	for i := range 64 {
		in.inject(tcpFrame([]byte(stacktest.MACA), 80, nil, func(f []byte) {
			// Spoof 198.18.1.100+i, which nobody answers for, port 1000+i.
			ip := header.IPv4(f[header.EthernetMinimumSize:])
			src := ip.SourceAddress().As4()
			src[3] = byte(100 + i)
			ip.SetSourceAddressWithChecksumUpdate(tcpip.AddrFrom4(src))
			tcph := header.TCP(ip[header.IPv4MinimumSize:])
			tcph.SetSourcePortWithChecksumUpdate(uint16(1000 + i))
			// The TCP checksum covers the pseudo-header's source too.
			tcph.SetChecksum(0)
			xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tcph)))
			tcph.SetChecksum(^tcph.CalculateChecksum(xsum))
		}))
	}
	if !testutil.Eventually(func() bool { return in.r.A.Netstack().Stats().TCP.ListenOverflowSynCookieSent.Value() > 0 }) {
		t.Error("no SYN cookie sent under a flood beyond the backlog")
	}
	transfer(t, in.r.B, netip.AddrPortFrom(stacktest.AddrA4, 80), 10, 10)
}

// TestTCPOptionsApplied reads the stack-wide TCP options back from netstack.
func TestTCPOptionsApplied(t *testing.T) {
	s, err := stack.New(stack.Options{TCP: stack.TCPOptions{
		DisableSACK: true, CongestionControl: "reno", SYNCookies: stack.SYNCookiesAlways,
		ReceiveBuffer: stack.BufferRange{Min: 8192, Default: 65536, Max: 1 << 22},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns := s.Netstack()
	var sack tcpip.TCPSACKEnabled
	var cc tcpip.CongestionControlOption
	var cookies tcpip.TCPAlwaysUseSynCookies
	var rcv tcpip.TCPReceiveBufferSizeRangeOption
	var moderate tcpip.TCPModerateReceiveBufferOption
	for _, o := range []tcpip.GettableTransportProtocolOption{&sack, &cc, &cookies, &rcv, &moderate} {
		if err := ns.TransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			t.Fatalf("%T: %s", o, err)
		}
	}
	if bool(sack) || cc != "reno" || !bool(cookies) || rcv != (tcpip.TCPReceiveBufferSizeRangeOption{Min: 8192, Default: 65536, Max: 1 << 22}) || !bool(moderate) {
		t.Errorf("options: sack %v cc %v cookies %v rcv %+v auto-tuning %v", sack, cc, cookies, rcv, moderate)
	}
}
