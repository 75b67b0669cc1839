package quicmux

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/mux/internal/testenv"
)

// TestOverAFXDP runs the socket-level tests with the engine's netstack on
// AF_XDP against quic-go peers on the kernel in a lab namespace.
func TestOverAFXDP(t *testing.T) {
	testenv.RunOverAFXDP(t, &sockets, socketTests())
}

// TestLabLinkDown: the engine's QUIC connection to a backend dies of idle
// timeout when the link goes down, and says so.
func TestLabLinkDown(t *testing.T) {
	e := testenv.NewLab(t, lab.Options{})
	testenv.Use(t, &sockets, e.Sockets())
	cli, _ := quicPair(t, ALPNRaw, Config{}, Config{IdleTimeout: 500 * time.Millisecond, KeepAlive: -1})
	w := testenv.NewWatcher()
	cli.SetWatcher(w)
	if err := e.Lab.SetLinkUp(e.Lab.BackendLink, false); err != nil {
		t.Fatal(err)
	}
	defer e.Lab.SetLinkUp(e.Lab.BackendLink, true)
	err := <-w.Dead
	if !errors.Is(err, net.ErrClosed) || cli.Alive() {
		t.Fatalf("after link down: %v", err)
	}
}

// labImpls are the lab benchmarks' clients of one quic-go server on the
// backend namespace's kernel UDP, over the same veth: quic-go on the engine
// namespace's kernel UDP (baseline) and mux on the engine netstack over
// AF_XDP (xdpnet).
func labImpls(b *testing.B, opts lab.Options) []benchImpl {
	e := testenv.NewLab(b, opts)
	return []benchImpl{
		{"baseline", func(b *testing.B) benchSide {
			return benchSide{cli: e.KernelEnginePacket(b), srv: e.BackendPacket(b)}
		}},
		{"xdpnet", func(b *testing.B) benchSide { return labNetstackSide(b, e, true) }},
		// quicgo-afxdp is bare quic-go on the same netstack socket, one
		// datagram per call: what the netstack and AF_XDP cost without mux.
		{"quicgo-afxdp", func(b *testing.B) benchSide { return labNetstackSide(b, e, false) }},
		// quicgo-afxdp-gso is bare quic-go on the socket mux makes of it
		// (batched sends): what mux's connection layer costs on its own.
		{"quicgo-afxdp-gso", func(b *testing.B) benchSide {
			s := labNetstackSide(b, e, false)
			s.muxSocket = true
			return s
		}},
	}
}

// labNetstackSide is a connected engine netstack socket to a new backend
// server socket.
func labNetstackSide(b *testing.B, e *testenv.Lab, useMux bool) benchSide {
	srv := e.BackendPacket(b)
	c, err := e.Stack.DialUDP(netip.AddrPortFrom(e.Engine, 0), netip.MustParseAddrPort(srv.LocalAddr().String()))
	if err != nil {
		b.Fatal(err)
	}
	cli, err := ConnectedPacketConn(c)
	if err != nil {
		b.Fatal(err)
	}
	return benchSide{cli: cli, srv: srv, useMux: useMux, rawServer: true, packetSize: netstackPacketSize}
}

// BenchmarkLabQUICStreamsMuxCost is BenchmarkQUICStreamsMuxCost over the
// lab: both clients on the engine netstack over AF_XDP, the server on the
// backend namespace's kernel (root only).
func BenchmarkLabQUICStreamsMuxCost(b *testing.B) {
	e := testenv.NewLab(b, lab.Options{})
	benchMuxCost(b, func(b *testing.B, useMux bool) benchSide { return labNetstackSide(b, e, useMux) })
}

// BenchmarkLabQUICStreams and its siblings are BenchmarkQUICStreams and
// siblings over the lab (root only).
func BenchmarkLabQUICStreams(b *testing.B)    { benchStreams(b, labImpls(b, lab.Options{})) }
func BenchmarkLabQUICHandshakes(b *testing.B) { benchHandshakes(b, labImpls(b, lab.Options{})) }
func BenchmarkLabQUICBulk(b *testing.B)       { benchBulk(b, labImpls(b, lab.Options{})) }

// BenchmarkLabQUICBulkPeerGRO is BenchmarkLabQUICBulk, baseline and
// xdpnet only (labImpls' first two), with GRO on the backend's veth, as a
// server's NIC has it (a veth's default is off): the backend's kernel then
// coalesces the AF_XDP client's datagrams before its socket, as it
// receives the baseline's GSO sends whole. No target is set on this
// topology; it shows what the per-frame skbs of copy-mode AF_XDP cost the
// receiver.
func BenchmarkLabQUICBulkPeerGRO(b *testing.B) {
	benchBulk(b, labImpls(b, lab.Options{PeerGRO: true})[:2])
}
