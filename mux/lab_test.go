package mux

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/stack"
)

// labEnv is the engine's side of the lab's backend link: a netstack on
// AF_XDP ports of the engine-side veth, owning 198.18.2.1. Its peers run on
// the backend namespace's kernel (server 198.18.2.10).
type labEnv struct {
	l      *lab.Lab
	s      *stack.Stack
	ep     *stack.Endpoint
	engine netip.Addr
	server netip.Addr
}

// newLabEnv builds the lab with opts (root only: it skips, or fails under
// CI, otherwise) and the engine netstack; all is torn down when t ends.
func newLabEnv(t testing.TB, opts lab.Options) *labEnv {
	t.Helper()
	opts.EngineKernelAddrs = true
	l := labtest.New(t, opts)
	lk := l.BackendLink
	e := &labEnv{l: l, engine: lk.EngineV4, server: lk.PeerV4()[0]}
	var steer *bpf.Steering
	var ports []stack.Port
	var pools []interface{ CheckConservation() error }
	err := l.Engine.Do(func() error {
		var err error
		if steer, err = bpf.LoadSteering(bpf.SteeringOptions{Queues: max(lk.Queues, 1)}); err != nil {
			return err
		}
		if err := errors.Join(steer.AddAddr(lk.EngineV4), steer.AddAddr(lk.EngineV6), steer.Attach(lk.Index, bpf.ModeNative)); err != nil {
			return err
		}
		for q := range max(lk.Queues, 1) {
			p, err := nic.Open(nic.Config{Ifindex: lk.Index, Queue: q, Map: steer, ZeroCopy: nic.ZeroCopyOff})
			if err != nil {
				return err
			}
			ports = append(ports, p)
			pools = append(pools, p.Pool())
		}
		return nil
	})
	if steer != nil {
		t.Cleanup(func() { steer.Close() })
	}
	if err != nil {
		for _, p := range ports {
			p.Close()
		}
		privtest.SkipIfNotSupported(t, err)
		t.Fatal(err)
	}
	if e.s, err = stack.New(stack.Options{}); err != nil {
		t.Fatal(err)
	}
	n, ep, err := e.s.AddXDPNIC(ports, stack.EndpointOptions{MAC: lk.MAC}, stack.NICOptions{Name: lk.Name})
	if err != nil {
		t.Fatal(err)
	}
	e.ep = ep
	t.Cleanup(func() {
		e.s.Close()
		if err := ep.CloseErr(); err != nil {
			t.Errorf("endpoint close: %v", err)
		}
		for i, p := range pools {
			if err := p.CheckConservation(); err != nil {
				t.Errorf("queue %d: %v", i, err)
			}
		}
	})
	for _, p := range []netip.Prefix{netip.PrefixFrom(lk.EngineV4, lk.Net4.Bits()), netip.PrefixFrom(lk.EngineV6, lk.Net6.Bits())} {
		if err := n.AddAddress(p); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// backendPacket opens a kernel UDP socket on the backend server address.
func (e *labEnv) backendPacket(t testing.TB) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	err := e.l.Backend.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(e.server, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// kernelEnginePacket opens a kernel UDP socket in the engine namespace on
// the kernel's own address of the backend link (198.18.2.254): the
// baseline's path over the same veth.
func (e *labEnv) kernelEnginePacket(t testing.TB) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	err := e.l.Engine.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(e.l.BackendLink.KernelV4, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// useLab makes the test's sockets: the client's on the engine netstack
// over AF_XDP, the server's on the backend namespace's kernel.
func (e *labEnv) useLab(t *testing.T) {
	oldPackets, oldTCP := packetPair, tcpListen
	t.Cleanup(func() { packetPair, tcpListen = oldPackets, oldTCP })
	packetPair = func(t testing.TB) (net.PacketConn, net.PacketConn) {
		t.Helper()
		cli, err := e.s.ListenUDP(netip.AddrPortFrom(e.engine, 0))
		if err != nil {
			t.Fatal(err)
		}
		return cli, e.backendPacket(t)
	}
	tcpListen = func(t testing.TB) (net.Listener, DialFunc) {
		t.Helper()
		var ln net.Listener
		err := e.l.Backend.Do(func() (err error) {
			ln, err = net.Listen("tcp", netip.AddrPortFrom(e.server, 0).String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		dst := netip.MustParseAddrPort(ln.Addr().String())
		return ln, func(ctx context.Context) (net.Conn, error) { return e.s.DialTCP(ctx, dst) }
	}
}

// TestOverAFXDP runs the socket-level tests with the engine's netstack on
// AF_XDP against quic-go and TCP peers on the kernel in a lab namespace.
func TestOverAFXDP(t *testing.T) {
	e := newLabEnv(t, lab.Options{})
	e.useLab(t)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"QUICStreamEcho", TestQUICStreamEcho},
		{"QUICBatchedSends", TestQUICBatchedSends},
		{"QUICCreditExhaustedThenRaised", TestQUICCreditExhaustedThenRaised},
		{"QUICManyStreams", TestQUICManyStreams},
		{"QUICShutdownDrains", TestQUICShutdownDrains},
		{"HTTP3Client", TestHTTP3Client},
		{"FramedConcurrentVirtualConnections", TestFramedConcurrentVirtualConnections},
		{"FramedCredit", TestFramedCredit},
		{"FramedPeerDisappearsAndReconnect", TestFramedPeerDisappearsAndReconnect},
		{"FramedShutdownDrains", TestFramedShutdownDrains},
		{"FramedPeerResets", TestFramedPeerResets},
		{"HTTP3GoAway", TestHTTP3GoAway},
		{"QUICPeerResetsStream", TestQUICPeerResetsStream},
		{"QUICPeerCloses", TestQUICPeerCloses},
	} {
		before := stack.Total(e.ep.Stats())
		t.Run(tc.name, tc.fn)
		// The traffic really crossed the AF_XDP rings.
		if after := stack.Total(e.ep.Stats()); after.RXFrames == before.RXFrames || after.TXFrames == before.TXFrames {
			t.Errorf("%s: no frames through AF_XDP (rx %d, tx %d)", tc.name, after.RXFrames-before.RXFrames, after.TXFrames-before.TXFrames)
		}
	}
	t.Logf("AF_XDP endpoint: %+v", stack.Total(e.ep.Stats()))
}

// TestLabLinkDown: the engine's QUIC connection to a backend dies of idle
// timeout when the link goes down, and says so.
func TestLabLinkDown(t *testing.T) {
	e := newLabEnv(t, lab.Options{})
	e.useLab(t)
	cli, _ := quicPair(t, ALPNRaw, Config{}, Config{IdleTimeout: 500 * time.Millisecond, KeepAlive: -1})
	w := newCreditWatcher()
	cli.SetWatcher(w)
	if err := e.l.SetLinkUp(e.l.BackendLink, false); err != nil {
		t.Fatal(err)
	}
	defer e.l.SetLinkUp(e.l.BackendLink, true)
	err := <-w.dead
	if !errors.Is(err, net.ErrClosed) || cli.Alive() {
		t.Fatalf("after link down: %v", err)
	}
}

// labImpls are the lab benchmarks' clients of one quic-go server on the
// backend namespace's kernel UDP, over the same veth: quic-go on the engine
// namespace's kernel UDP (baseline) and mux on the engine netstack over
// AF_XDP (xdpnet).
func labImpls(b *testing.B, opts lab.Options) []benchImpl {
	e := newLabEnv(b, opts)
	return []benchImpl{
		{"baseline", func(b *testing.B) benchSide {
			return benchSide{cli: e.kernelEnginePacket(b), srv: e.backendPacket(b)}
		}},
		{"xdpnet", func(b *testing.B) benchSide { return e.netstackSide(b, true) }},
		// quicgo-afxdp is bare quic-go on the same netstack socket, one
		// datagram per call: what the netstack and AF_XDP cost without mux.
		{"quicgo-afxdp", func(b *testing.B) benchSide { return e.netstackSide(b, false) }},
		// quicgo-afxdp-gso is bare quic-go on the socket mux makes of it
		// (batched sends): what mux's connection layer costs on its own.
		{"quicgo-afxdp-gso", func(b *testing.B) benchSide {
			s := e.netstackSide(b, false)
			s.muxSocket = true
			return s
		}},
	}
}

// netstackSide is a connected engine netstack socket to a new backend
// server socket.
func (e *labEnv) netstackSide(b *testing.B, useMux bool) benchSide {
	srv := e.backendPacket(b)
	c, err := e.s.DialUDP(netip.AddrPortFrom(e.engine, 0), netip.MustParseAddrPort(srv.LocalAddr().String()))
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
	e := newLabEnv(b, lab.Options{})
	benchMuxCost(b, e.netstackSide)
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
