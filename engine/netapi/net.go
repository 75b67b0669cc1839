package netapi

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
)

// Net is the network stack the proxy runs on. The same proxy logic runs on
// the kernel's sockets ([Kernel]) and on the AF_XDP data plane
// (*dataplane.Plane, which has these methods and those of the optional
// interfaces below); only the sockets differ.
type Net interface {
	// Name says which stack this is, for logs, metrics and the demo.
	Name() string
	// Workers is the number of workers (one per dedicated queue on xdp).
	Workers() int
	// ListenTCP opens a TCP listener for a frontend.
	ListenTCP(addr netip.AddrPort) (net.Listener, error)
	// ListenUDP opens a UDP socket for an h3 frontend.
	ListenUDP(addr netip.AddrPort) (net.PacketConn, error)
	// BackendPacketConn opens worker w's UDP socket for its backend QUIC
	// connections, with a local address able to reach backend.
	BackendPacketConn(w int, backend netip.Addr) (net.PacketConn, error)
	// DialTCP opens worker w's TCP connection to a backend server (HTTP/2
	// and HTTP/1.1 backends); ctx bounds the handshake only.
	DialTCP(ctx context.Context, w int, server netip.AddrPort) (net.Conn, error)
	// Close releases the stack (ports, programs). Sockets opened from it
	// must be closed first.
	Close() error
}

// ServerConnector is implemented by stacks on which a UDP socket connected
// to one backend server is cheaper than a shared unconnected one: on the
// netstack an unconnected socket's WriteTo resolves the route for every
// datagram, a connected one reuses the route it resolved at connect time.
// The engine then keeps one QUIC transport per worker and server instead of
// one per worker and address family.
type ServerConnector interface {
	// DialBackend opens worker w's UDP socket connected to server; the
	// engine adapts it to the net.PacketConn quic-go needs (see
	// quicmux.ConnectedPacketConn).
	DialBackend(w int, server netip.AddrPort) (net.Conn, error)
}

// ConnWorker is implemented by stacks that know which worker's queue
// carries a TCP connection's packets (dataplane.Plane: the RX queue its SYN
// arrived on). Without it, or when it cannot tell, the engine spreads connections
// over the workers by a hash of the client's address.
type ConnWorker interface {
	WorkerFor(local, remote netip.AddrPort) (worker int, ok bool)
}

// PacketSizer is implemented by stacks on which quic-go cannot discover the
// path MTU (netstack sockets cannot set the DF bit): QUIC connections then
// start, and stay, at the size it returns for a destination (0: quic-go's
// default of 1280-byte packets).
type PacketSizer interface {
	QUICPacketSize(dst netip.Addr) uint16
}

// QUICPacketSize is n's QUIC packet size towards dst (see [PacketSizer]),
// or 0.
func QUICPacketSize(n Net, dst netip.Addr) uint16 {
	if ps, ok := n.(PacketSizer); ok {
		return ps.QUICPacketSize(dst)
	}
	return 0
}

// Kernel is [Net] on the kernel's sockets: the baseline the netstack data
// plane is measured against, and the stack for unit tests on loopback.
type Kernel struct {
	// N is the number of workers; 0 means GOMAXPROCS.
	N int
	// Do, when set, runs socket creation (e.g. inside a network namespace:
	// lab.NS.Do). Sockets keep the namespace they were created in.
	Do func(func() error) error
}

var _ Net = (*Kernel)(nil)

// Name implements Net.
func (k *Kernel) Name() string { return "kernel" }

// Workers implements Net.
func (k *Kernel) Workers() int {
	if k.N > 0 {
		return k.N
	}
	return runtime.GOMAXPROCS(0)
}

func (k *Kernel) do(fn func() error) error {
	if k.Do != nil {
		return k.Do(fn)
	}
	return fn()
}

// ListenTCP implements Net.
func (k *Kernel) ListenTCP(addr netip.AddrPort) (ln net.Listener, err error) {
	err = k.do(func() error {
		var lc net.ListenConfig
		ln, err = lc.Listen(context.Background(), "tcp", addr.String())
		return err
	})
	return ln, err
}

// ListenUDP implements Net.
func (k *Kernel) ListenUDP(addr netip.AddrPort) (pc net.PacketConn, err error) {
	err = k.do(func() error {
		pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	return pc, err
}

// BackendPacketConn implements Net: an unbound-address UDP socket of the
// backend's family; the kernel picks the source address by route.
func (k *Kernel) BackendPacketConn(_ int, backend netip.Addr) (pc net.PacketConn, err error) {
	network := "udp4"
	if backend.Is6() && !backend.Is4In6() {
		network = "udp6"
	}
	err = k.do(func() error {
		pc, err = net.ListenUDP(network, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("backend socket: %w", err)
	}
	return pc, nil
}

// DialTCP implements Net: a kernel TCP connection; the kernel picks the
// source address by route.
func (k *Kernel) DialTCP(ctx context.Context, _ int, server netip.AddrPort) (c net.Conn, err error) {
	err = k.do(func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", server.String())
		return err
	})
	return c, err
}

// Close implements Net.
func (k *Kernel) Close() error { return nil }
