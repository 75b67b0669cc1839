package stack_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// fastPair is an XDP pair with a UDP server on B and a client on A
// connected to it from a fixed port, A's frames captured.
type fastPair struct {
	r    *stacktest.XDPResult
	srv  net.PacketConn
	cli  net.Conn
	capt *stack.Capture
	buf  *syncBuffer
}

func newFastPair(t *testing.T, v6, disable bool) *fastPair {
	return newFastPairMem(t, v6, disable, stacktest.MemConfig{})
}

// newFastPairMem is newFastPair over ports configured by mem.
func newFastPairMem(t *testing.T, v6, disable bool, mem stacktest.MemConfig) *fastPair {
	t.Helper()
	p := &fastPair{buf: new(syncBuffer)}
	var err error
	if p.capt, err = stack.NewCapture(p.buf, 4096); err != nil {
		t.Fatal(err)
	}
	p.r = stacktest.NewXDPPair(t, stacktest.XDPOptions{Mem: mem, A: stack.EndpointOptions{Capture: p.capt, DisableUDPFastPath: disable}})
	src, dst := netip.AddrPortFrom(stacktest.AddrA4, 5000), netip.AddrPortFrom(stacktest.AddrB4, 4433)
	if v6 {
		src, dst = netip.AddrPortFrom(stacktest.AddrA6, 5000), netip.AddrPortFrom(stacktest.AddrB6, 4433)
	}
	if p.srv, err = p.r.B.ListenUDP(dst); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.srv.Close() })
	if p.cli, err = p.r.A.DialUDP(src, dst); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cli.Close() })
	return p
}

// roundTrip writes b and reads it back at the server.
func (p *fastPair) roundTrip(t *testing.T, b []byte) {
	t.Helper()
	if n, err := p.cli.Write(b); err != nil || n != len(b) {
		t.Fatalf("write %d bytes: %d, %v", len(b), n, err)
	}
	p.expect(t, b)
}

func (p *fastPair) expect(t *testing.T, b []byte) {
	t.Helper()
	got := make([]byte, 65536)
	p.srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := p.srv.ReadFrom(got)
	if err != nil {
		t.Fatalf("read %d-byte datagram: %v", len(b), err)
	}
	if !bytes.Equal(got[:n], b) {
		t.Fatalf("datagram of %d bytes came back as %d bytes, differing", len(b), n)
	}
}

func (p *fastPair) fast() uint64 { return stack.Total(p.r.EPA.Stats()).TXUDPFast }

// udpFrames returns the captured frames that carry UDP to port 4433.
func (p *fastPair) udpFrames(t *testing.T) [][]byte {
	t.Helper()
	if err := p.capt.Err(); err != nil {
		t.Fatal(err)
	}
	b := p.buf.bytes()
	var out [][]byte
	for off := 24; off+16 <= len(b); {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		f := b[off+16 : off+16+incl]
		off += 16 + incl
		eth := header.Ethernet(f)
		var proto uint8
		var l4 []byte
		switch eth.Type() {
		case header.IPv4ProtocolNumber:
			ip := header.IPv4(f[header.EthernetMinimumSize:])
			proto, l4 = ip.Protocol(), ip.Payload()
		case header.IPv6ProtocolNumber:
			ip := header.IPv6(f[header.EthernetMinimumSize:])
			proto, l4 = uint8(ip.NextHeader()), ip.Payload()
		default:
			continue
		}
		if proto == uint8(header.UDPProtocolNumber) && header.UDP(l4).DestinationPort() == 4433 {
			out = append(out, f)
		}
	}
	return out
}

// TestUDPFastPathFramesMatchNetstack: a connected socket's datagrams
// written straight into frames are byte for byte the frames the netstack
// builds for them (headers, lengths, checksums), in both families, and
// arrive intact (B verifies every checksum).
func TestUDPFastPathFramesMatchNetstack(t *testing.T) {
	// The last is the largest that fits a 1500-byte MTU with IPv4's
	// header, cut to IPv6's below.
	payloads := [][]byte{{}, {1}, []byte("odd length"), bytes.Repeat([]byte{0xff}, 1000), make([]byte, 1472)}
	for i := range payloads[4] {
		payloads[4][i] = byte(i * 7)
	}
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			var frames [2][][]byte
			for i, disable := range []bool{true, false} {
				p := newFastPair(t, v6, disable)
				// The first datagram waits in the netstack for address
				// resolution; the ones after it take the fast path.
				p.roundTrip(t, []byte("resolve"))
				before := p.fast()
				for _, b := range payloads {
					if v6 && len(b) > 1452 {
						b = b[:1452]
					}
					p.roundTrip(t, b)
				}
				got := p.fast() - before
				if want := uint64(len(payloads)); !disable && got != want || disable && got != 0 {
					t.Fatalf("disable=%v: %d datagrams took the fast path, sent %d", disable, got, len(payloads))
				}
				frames[i] = p.udpFrames(t)[1:]
			}
			if len(frames[0]) != len(payloads) || len(frames[1]) != len(payloads) {
				t.Fatalf("captured %d netstack frames and %d fast-path frames, want %d each", len(frames[0]), len(frames[1]), len(payloads))
			}
			for i := range frames[0] {
				if !bytes.Equal(frames[0][i], frames[1][i]) {
					t.Errorf("datagram %d:\nnetstack  % x\nfast path % x", i, frames[0][i][:min(len(frames[0][i]), 64)], frames[1][i][:min(len(frames[1][i]), 64)])
				}
			}
		})
	}
}

// TestUDPFastPathChecksumOffload: where the port offers checksum offload,
// fast-path frames leave with the pseudo-header sum in their UDP checksum,
// as the capture shows, and the port finishes it: B verifies every checksum
// and drops none.
func TestUDPFastPathChecksumOffload(t *testing.T) {
	payloads := [][]byte{{}, []byte("odd length"), bytes.Repeat([]byte{0xff}, 1000), make([]byte, 1452)}
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			p := newFastPairMem(t, v6, false, stacktest.MemConfig{TxChecksum: true})
			p.roundTrip(t, []byte("resolve"))
			port := p.r.Wires[0].A
			before, fastBefore := port.ChecksumsFinished(), p.fast()
			for _, b := range payloads {
				p.roundTrip(t, b)
			}
			// Every fast-path datagram leaves its checksum to the port. The
			// port may finish more: netstack's own packets with offload
			// (CI saw one more, once, under load).
			if fin, fast := port.ChecksumsFinished()-before, p.fast()-fastBefore; fast != uint64(len(payloads)) || fin < fast {
				t.Errorf("%d fast-path datagrams, %d checksums finished by the port; want %d, and at least as many finished", fast, fin, len(payloads))
			}
			if drops := stack.Total(p.r.EPB.Stats()).RXDropChecksum(); drops != 0 {
				t.Errorf("B dropped %d frames for bad checksums", drops)
			}
			frames := p.udpFrames(t)
			for i, f := range frames[len(frames)-len(payloads):] {
				var src, dst tcpip.Address
				var u header.UDP
				if v6 {
					ip := header.IPv6(f[header.EthernetMinimumSize:])
					src, dst, u = ip.SourceAddress(), ip.DestinationAddress(), header.UDP(ip.Payload())
				} else {
					ip := header.IPv4(f[header.EthernetMinimumSize:])
					src, dst, u = ip.SourceAddress(), ip.DestinationAddress(), header.UDP(ip.Payload())
				}
				if want := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, u.Length()); u.Checksum() != want {
					t.Errorf("datagram %d: captured UDP checksum %#04x, want the pseudo-header sum %#04x", i, u.Checksum(), want)
				}
			}
		})
	}
}

// TestUDPFastPathAllocations: the fast path allocates nothing per datagram
// on its way through the sender's endpoint and the receiver's, with and
// without checksum offload.
func TestUDPFastPathAllocations(t *testing.T) {
	if raceEnabled {
		// The race detector's instrumentation moves values to the heap;
		// make test runs this test again without it.
		t.Skip("allocation counts are meaningful without -race only")
	}
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			p := newFastPairMem(t, false, false, stacktest.MemConfig{TxChecksum: offload})
			p.roundTrip(t, []byte("resolve"))
			const burst = 64
			msg, buf := make([]byte, 1200), make([]byte, 2048)
			p.srv.SetReadDeadline(time.Now().Add(time.Minute))
			before := p.fast()
			allocs := testing.AllocsPerRun(20, func() {
				for range burst {
					if _, err := p.cli.Write(msg); err != nil {
						t.Fatal(err)
					}
				}
				for range burst {
					if _, _, err := p.srv.ReadFrom(buf); err != nil {
						t.Fatal(err)
					}
				}
			})
			if fast := p.fast() - before; fast < 20*burst {
				t.Fatalf("%d datagrams took the fast path, want at least %d", fast, 20*burst)
			}
			// The reader's net.Addr may cost one per burst.
			if allocs > 2 {
				t.Errorf("%.1f allocations per burst of %d datagrams, want at most 2", allocs, burst)
			}
		})
	}
}

// TestUDPFastPathOversize: a datagram that needs fragmenting goes through
// the netstack, which fragments it.
func TestUDPFastPathOversize(t *testing.T) {
	p := newFastPair(t, false, false)
	p.roundTrip(t, []byte("resolve"))
	p.roundTrip(t, []byte("fast"))
	before := p.fast()
	if before == 0 {
		t.Fatal("fast path not taken")
	}
	p.roundTrip(t, bytes.Repeat([]byte("fragment me "), 400))
	if p.fast() != before {
		t.Fatal("a 4800-byte datagram took the fast path")
	}
	p.roundTrip(t, []byte("fast again"))
	if p.fast() != before+1 {
		t.Fatal("fast path not taken after the oversize datagram")
	}
}

// TestUDPFastPathNeighbourChange: the fast path follows the neighbour
// cache: a changed link address is used, and a removed entry is resolved
// again (the datagrams of the gap go through the netstack, which resolves).
func TestUDPFastPathNeighbourChange(t *testing.T) {
	p := newFastPair(t, false, false)
	p.roundTrip(t, []byte("resolve"))
	ns := p.r.A.Netstack()
	nicID := p.r.NICA.ID()
	bogus := tcpip.LinkAddress("\x02\x00\x00\x00\x00\x99")
	if err := ns.AddStaticNeighbor(nicID, ipv4.ProtocolNumber, tcpip.AddrFrom4(stacktest.AddrB4.As4()), bogus); err != nil {
		t.Fatal(err)
	}
	// B drops frames for another MAC once the template picks up the
	// static entry.
	testutil.WaitFor(t, "frames to the new link address", func() bool {
		if _, err := p.cli.Write([]byte("to nowhere")); err != nil {
			t.Fatal(err)
		}
		return stack.Total(p.r.EPB.Stats()).RXDropOtherHost > 0
	})
	arpBefore := ns.Stats().ARP.OutgoingRequestsSent.Value()
	if err := ns.RemoveNeighbor(nicID, ipv4.ProtocolNumber, tcpip.AddrFrom4(stacktest.AddrB4.As4())); err != nil {
		t.Fatal(err)
	}
	// Datagrams to the bogus address may still be written until the
	// template is rebuilt; then resolution runs again and they arrive.
	got := make([]byte, 64)
	testutil.WaitFor(t, "datagrams after re-resolution", func() bool {
		if _, err := p.cli.Write([]byte("back")); err != nil {
			t.Fatal(err)
		}
		p.srv.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		for {
			n, _, err := p.srv.ReadFrom(got)
			if err != nil {
				return false
			}
			if string(got[:n]) == "back" {
				return true
			}
		}
	})
	if ns.Stats().ARP.OutgoingRequestsSent.Value() == arpBefore {
		t.Error("no ARP request after the entry was removed")
	}
	before := p.fast()
	p.roundTrip(t, []byte("fast again"))
	if p.fast() == before {
		t.Error("fast path not taken after re-resolution")
	}
}

// TestUDPFastPathConcurrentWritersAndClose: writers on one socket race the
// stack's close; every write either succeeds or fails with net.ErrClosed,
// and every frame is back in A's pools afterwards.
func TestUDPFastPathConcurrentWritersAndClose(t *testing.T) {
	p := newFastPair(t, false, false)
	p.roundTrip(t, []byte("resolve"))
	var wg sync.WaitGroup
	var bad sync.Map
	for w := range 4 {
		wg.Go(func() {
			b := make([]byte, 1200)
			for i := range 20000 {
				binary.BigEndian.PutUint32(b, uint32(w<<24|i))
				if _, err := p.cli.Write(b); err != nil {
					if !errors.Is(err, net.ErrClosed) {
						bad.Store(w, err)
					}
					return
				}
			}
		})
	}
	testutil.WaitFor(t, "fast-path traffic", func() bool { return p.fast() > 1000 })
	if err := p.r.A.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	bad.Range(func(k, v any) bool { t.Errorf("writer %v: %v", k, v); return true })
	if err := p.r.EPA.CloseErr(); err != nil {
		t.Fatal(err)
	}
	for i, w := range p.r.Wires {
		if err := w.A.Pool().CheckConservation(); err != nil {
			t.Errorf("queue %d: %v", i, err)
		}
	}
	st := stack.Total(p.r.EPA.Stats())
	if st.TXFrames+st.TXDrops() != st.TXPackets {
		t.Errorf("%d packets written, %d frames sent and %d dropped", st.TXPackets, st.TXFrames, st.TXDrops())
	}
}

// BenchmarkUDPFastPath compares UDP through the netstack (impl=netstack,
// EndpointOptions.DisableUDPFastPath on both sides) with the fast paths
// (impl=fastpath) over the in-memory AF_XDP pair, in one run: a connected
// client, a server bound to one address. roundtrip sends 1200 bytes and
// waits for the answer; burst64 sends 64 datagrams, then reads them at the
// server.
func BenchmarkUDPFastPath(b *testing.B) {
	for _, mode := range []string{"roundtrip", "burst64"} {
		for _, impl := range []string{"netstack", "fastpath"} {
			b.Run("mode="+mode+"/impl="+impl, func(b *testing.B) {
				off := stack.EndpointOptions{DisableUDPFastPath: impl == "netstack"}
				r := stacktest.NewXDPPair(b, stacktest.XDPOptions{A: off, B: off})
				dst := netip.AddrPortFrom(stacktest.AddrB4, 4433)
				srv, err := r.B.ListenUDP(dst)
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				cli, err := r.A.DialUDP(netip.AddrPort{}, dst)
				if err != nil {
					b.Fatal(err)
				}
				defer cli.Close()
				srv.SetReadDeadline(time.Now().Add(time.Minute))
				cli.SetReadDeadline(time.Now().Add(time.Minute))
				msg, buf := make([]byte, 1200), make([]byte, 2048)
				// Resolve the neighbour before timing.
				if _, err := cli.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, _, err := srv.ReadFrom(buf); err != nil {
					b.Fatal(err)
				}
				burst := 1
				if mode == "burst64" {
					burst = 64
				}
				b.ReportAllocs()
				b.SetBytes(int64(burst * len(msg)))
				for b.Loop() {
					for range burst {
						if _, err := cli.Write(msg); err != nil {
							b.Fatal(err)
						}
					}
					var from net.Addr
					for range burst {
						if _, from, err = srv.ReadFrom(buf); err != nil {
							b.Fatal(err)
						}
					}
					if mode == "roundtrip" {
						if _, err := srv.WriteTo(msg, from); err != nil {
							b.Fatal(err)
						}
						if _, err := cli.Read(buf); err != nil {
							b.Fatal(err)
						}
					}
				}
				if fast := stack.Total(r.EPA.Stats()).TXUDPFast; impl == "fastpath" && fast == 0 || impl == "netstack" && fast != 0 {
					b.Fatalf("%s: %d datagrams took the fast path", impl, fast)
				}
			})
		}
	}
}

// echo sends b from the server to the client and reads it at the client.
func (p *fastPair) echo(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.srv.WriteTo(b, p.cli.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 65536)
	p.cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := p.cli.Read(got)
	if err != nil {
		t.Fatalf("read %d-byte datagram: %v", len(b), err)
	}
	if !bytes.Equal(got[:n], b) {
		t.Fatalf("datagram of %d bytes came back as %d bytes, differing", len(b), n)
	}
}

func (p *fastPair) fastRX() uint64 { return stack.Total(p.r.EPA.Stats()).RXUDPFast }

// TestUDPFastPathReceive: datagrams of a connected socket's flow reach it
// straight from the frames, intact, in both families; a fragmented one
// still comes through netstack; after Close the flow is netstack's again.
func TestUDPFastPathReceive(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			p := newFastPair(t, v6, false)
			p.roundTrip(t, []byte("resolve"))
			max := 1472
			if v6 {
				max = 1452
			}
			big := make([]byte, max)
			for i := range big {
				big[i] = byte(i)
			}
			for i, b := range [][]byte{{}, {1}, []byte("odd length"), big} {
				p.echo(t, b)
				if got := p.fastRX(); got != uint64(i+1) {
					t.Fatalf("%d datagrams received on the fast path, want %d", got, i+1)
				}
			}
			p.echo(t, bytes.Repeat([]byte("fragment me "), 400))
			if got := p.fastRX(); got != 4 {
				t.Fatalf("a fragmented datagram took the fast path (%d)", got)
			}
			ns := p.r.A.Netstack().Stats().UDP
			unreachable := ns.UnknownPortErrors.Value()
			p.cli.Close()
			if _, err := p.srv.WriteTo([]byte("closed"), p.cli.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, "netstack to refuse the closed socket's datagram", func() bool { return ns.UnknownPortErrors.Value() > unreachable })
			if got := p.fastRX(); got != 4 {
				t.Fatalf("a datagram for a closed socket took the fast path (%d)", got)
			}
		})
	}
}

// TestUDPFastPathReceiveBuffer: the fast receive queue holds what the
// socket's receive buffer allows, as netstack's does, and counts the rest.
func TestUDPFastPathReceiveBuffer(t *testing.T) {
	p := newFastPair(t, false, false)
	p.roundTrip(t, []byte("resolve"))
	if err := p.cli.(*stack.UDPConn).SetReadBuffer(0); err != nil { // clamped to 4 KiB
		t.Fatal(err)
	}
	udpStats := p.r.A.Netstack().Stats().UDP
	overflows := udpStats.ReceiveBufferErrors.Value()
	msg := make([]byte, 1000)
	const sent = 20
	before := p.fastRX()
	for range sent {
		if _, err := p.srv.WriteTo(msg, p.cli.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// RXUDPFast counts what the fast path took, queued or dropped.
	testutil.WaitFor(t, "all datagrams to arrive", func() bool { return p.fastRX()-before >= sent })
	// A datagram is let in while less than the buffer is queued.
	queued := 0
	buf := make([]byte, 2048)
	for {
		p.cli.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := p.cli.Read(buf); err != nil {
			break
		}
		queued++
	}
	if queued != 5 || udpStats.ReceiveBufferErrors.Value()-overflows != sent-5 {
		t.Fatalf("4 KiB buffer queued %d datagrams of 1000 bytes and dropped %d, want 5 and %d", queued, udpStats.ReceiveBufferErrors.Value()-overflows, sent-5)
	}
	p.echo(t, []byte("room again"))

	// Conservation: datagrams still queued when the socket closes give
	// their buffers back, as those read did.
	before = p.fastRX()
	for range 3 {
		if _, err := p.srv.WriteTo(msg, p.cli.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "3 more datagrams to arrive", func() bool { return p.fastRX()-before >= 3 })
	if s := p.r.A.DatagramBufferStats(); s.InUse != 3 {
		t.Errorf("%d datagram buffers in use with 3 datagrams queued", s.InUse)
	}
	p.cli.Close()
	if s := p.r.A.DatagramBufferStats(); s.InUse != 0 || s.Gets == 0 {
		t.Errorf("datagram buffers after close: %+v", s)
	}
}

// TestUDPFastPathListener: a socket bound to one address receives from any
// sender on the fast path, ReadFrom names each sender, and its answers to
// them leave on the fast path too (a path per destination); a wildcard
// socket stays with netstack both ways.
func TestUDPFastPathListener(t *testing.T) {
	for _, wildcard := range []bool{false, true} {
		t.Run(fmt.Sprintf("wildcard=%v", wildcard), func(t *testing.T) {
			r := stacktest.NewXDPPair(t, stacktest.XDPOptions{})
			bind := netip.AddrPortFrom(stacktest.AddrB4, 4433)
			if wildcard {
				bind = netip.AddrPortFrom(netip.Addr{}, 4433)
			}
			srv, err := r.B.ListenUDP(bind)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			dst := netip.AddrPortFrom(stacktest.AddrB4, 4433)
			var clis []net.Conn
			for range 2 {
				c, err := r.A.DialUDP(netip.AddrPort{}, dst)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				clis = append(clis, c)
			}
			buf := make([]byte, 2048)
			srv.SetReadDeadline(time.Now().Add(10 * time.Second))
			for round := range 3 {
				for i, c := range clis {
					msg := fmt.Appendf(nil, "client %d round %d", i, round)
					if _, err := c.Write(msg); err != nil {
						t.Fatal(err)
					}
					n, from, err := srv.ReadFrom(buf)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(buf[:n], msg) || from.String() != c.LocalAddr().String() {
						t.Fatalf("got %q from %v, want %q from %v", buf[:n], from, msg, c.LocalAddr())
					}
				}
			}
			// The first datagram of each client waited for ARP in A's
			// netstack; all arrived at B as frames.
			if fast := stack.Total(r.EPB.Stats()).RXUDPFast; wildcard && fast != 0 || !wildcard && fast != 6 {
				t.Fatalf("wildcard=%v: %d of 6 datagrams received on the fast path", wildcard, fast)
			}
			// B learnt A's address from A's ARP request: its answers
			// need no resolution.
			for round := range 3 {
				for i, c := range clis {
					msg := fmt.Appendf(nil, "answer %d to client %d", round, i)
					if _, err := srv.WriteTo(msg, c.LocalAddr()); err != nil {
						t.Fatal(err)
					}
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					n, err := c.Read(buf)
					if err != nil || !bytes.Equal(buf[:n], msg) {
						t.Fatalf("client %d read %q, %v; want %q", i, buf[:n], err, msg)
					}
				}
			}
			if fast := stack.Total(r.EPB.Stats()).TXUDPFast; wildcard && fast != 0 || !wildcard && fast != 6 {
				t.Fatalf("wildcard=%v: %d of 6 answers sent on the fast path", wildcard, fast)
			}
		})
	}
}
