package testenv

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/stack"
)

// Lab is the engine's side of the lab's backend link: a netstack on
// AF_XDP ports of the engine-side veth, owning 198.18.2.1. Its peers run on
// the backend namespace's kernel (server 198.18.2.10).
type Lab struct {
	Lab    *lab.Lab
	Stack  *stack.Stack
	EP     *stack.Endpoint
	Engine netip.Addr // the netstack's address
	Server netip.Addr // the backend namespace's
}

// NewLab builds the lab with opts (root only: it skips, or fails under
// CI, otherwise) and the engine netstack; all is torn down when t ends.
func NewLab(t testing.TB, opts lab.Options) *Lab {
	t.Helper()
	opts.EngineKernelAddrs = true
	l := labtest.New(t, opts)
	lk := l.BackendLink
	e := &Lab{Lab: l, Engine: lk.EngineV4, Server: lk.PeerV4()[0]}
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
	if e.Stack, err = stack.New(stack.Options{}); err != nil {
		t.Fatal(err)
	}
	n, ep, err := e.Stack.AddXDPNIC(ports, stack.EndpointOptions{MAC: lk.MAC}, stack.NICOptions{Name: lk.Name})
	if err != nil {
		t.Fatal(err)
	}
	e.EP = ep
	t.Cleanup(func() {
		e.Stack.Close()
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

// BackendPacket opens a kernel UDP socket on the backend server address.
func (e *Lab) BackendPacket(t testing.TB) net.PacketConn {
	t.Helper()
	return listenPacket(t, e.Lab.Backend, netip.AddrPortFrom(e.Server, 0))
}

// KernelEnginePacket opens a kernel UDP socket in the engine namespace on
// the kernel's own address of the backend link (198.18.2.254): the
// baseline's path over the same veth.
func (e *Lab) KernelEnginePacket(t testing.TB) net.PacketConn {
	t.Helper()
	return listenPacket(t, e.Lab.Engine, netip.AddrPortFrom(e.Lab.BackendLink.KernelV4, 0))
}

// listenPacket opens a kernel UDP socket on addr in namespace ns.
func listenPacket(t testing.TB, ns *lab.NS, addr netip.AddrPort) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", addr.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// Sockets makes each test's sockets on the lab: the client's on the engine
// netstack over AF_XDP, the server's on the backend namespace's kernel.
func (e *Lab) Sockets() Sockets {
	return Sockets{PacketPair: e.packetPair, TCPListen: e.tcpListen}
}

func (e *Lab) packetPair(t testing.TB) (net.PacketConn, net.PacketConn) {
	t.Helper()
	cli, err := e.Stack.ListenUDP(netip.AddrPortFrom(e.Engine, 0))
	if err != nil {
		t.Fatal(err)
	}
	return cli, e.BackendPacket(t)
}

func (e *Lab) tcpListen(t testing.TB) (net.Listener, func(context.Context) (net.Conn, error)) {
	t.Helper()
	var ln net.Listener
	err := e.Lab.Backend.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(e.Server, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort(ln.Addr().String())
	return ln, func(ctx context.Context) (net.Conn, error) { return e.Stack.DialTCP(ctx, dst) }
}

// RunOverAFXDP builds the lab and runs tests with *sockets made on it (see
// Lab.Sockets), checking that each test's traffic crossed the AF_XDP rings.
func RunOverAFXDP(t *testing.T, sockets *Sockets, tests []Test) {
	e := NewLab(t, lab.Options{})
	Use(t, sockets, e.Sockets())
	for _, tc := range tests {
		before := stack.Total(e.EP.Stats())
		t.Run(tc.Name, tc.Fn)
		if after := stack.Total(e.EP.Stats()); after.RXFrames == before.RXFrames || after.TXFrames == before.TXFrames {
			t.Errorf("%s: no frames through AF_XDP (rx %d, tx %d)", tc.Name, after.RXFrames-before.RXFrames, after.TXFrames-before.TXFrames)
		}
	}
	t.Logf("AF_XDP endpoint: %+v", stack.Total(e.EP.Stats()))
}
