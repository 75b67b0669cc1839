package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

var netErrClosed = net.ErrClosed

// defaultListenBacklog matches Linux's default somaxconn: enough for the
// 1,000 concurrent handshakes a busy frontend sees without falling back to
// SYN cookies.
const defaultListenBacklog = 4096

// fullAddr converts an AddrPort; an invalid or unspecified address means
// "any" and binds IPv6 dual-stack (IPv4 arrives as IPv4-mapped).
func fullAddr(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	a := ap.Addr().Unmap()
	if !a.IsValid() || a == netip.IPv6Unspecified() {
		return tcpip.FullAddress{Port: ap.Port()}, ipv6.ProtocolNumber
	}
	if a == netip.IPv4Unspecified() {
		return tcpip.FullAddress{Port: ap.Port()}, netProto(a)
	}
	return tcpip.FullAddress{Addr: toAddr(a), Port: ap.Port()}, netProto(a)
}

// ListenTCP listens on addr. The zero or unspecified address listens on every
// address of the stack, IPv6 and IPv4; port 0 picks a free port.
func (s *Stack) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	if s.isClosed() {
		return nil, opErr("listen", "tcp", addr, ErrClosed)
	}
	fa, proto := fullAddr(addr)
	var wq waiter.Queue
	ep, terr := s.ns.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, opErr("listen", "tcp", addr, tcpipErr(terr))
	}
	if terr := ep.Bind(fa); terr != nil {
		ep.Close()
		return nil, opErr("listen", "tcp", addr, tcpipErr(terr))
	}
	if terr := ep.Listen(s.backlog); terr != nil {
		ep.Close()
		return nil, opErr("listen", "tcp", addr, tcpipErr(terr))
	}
	return &tcpListener{l: gonet.NewTCPListener(s.ns, &wq, ep), s: s}, nil
}

// DialTCP connects to addr, choosing the source address by route. The
// context bounds the handshake only.
func (s *Stack) DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return s.DialTCPFrom(ctx, netip.AddrPort{}, addr)
}

// DialTCPFrom connects to raddr from laddr (zero fields: chosen by the
// stack).
func (s *Stack) DialTCPFrom(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
	if s.isClosed() {
		return nil, opErr("dial", "tcp", raddr, ErrClosed)
	}
	if !raddr.Addr().IsValid() || raddr.Port() == 0 {
		return nil, opErr("dial", "tcp", raddr, errors.New("invalid remote address"))
	}
	rfa, proto := fullAddr(raddr)
	var lfa tcpip.FullAddress
	if laddr.IsValid() {
		lfa, _ = fullAddr(laddr)
	}
	c, err := gonet.DialTCPWithBind(ctx, s.ns, lfa, rfa, proto)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, opErr("dial", "tcp", raddr, ctxErr)
		}
		return nil, opErr("dial", "tcp", raddr, unwrapOp(err))
	}
	return &tcpConn{TCPConn: c, s: s}, nil
}

// ListenUDP opens a UDP socket bound to addr (zero or unspecified address:
// every address, dual-stack; port 0: a free port). It is a *UDPConn;
// WriteTo takes a *net.UDPAddr. Bound to a unicast address, it receives
// straight from an Endpoint's frames (see the package doc).
func (s *Stack) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	if s.isClosed() {
		return nil, opErr("listen", "udp", addr, ErrClosed)
	}
	fa, proto := fullAddr(addr)
	c, err := s.newUDPConn(proto, &fa, nil)
	if err != nil {
		return nil, opErr("listen", "udp", addr, err)
	}
	return c, nil
}

// DialUDP opens a UDP socket connected to raddr, from laddr (zero fields:
// chosen by the stack). It is a *UDPConn. When its route leaves by an
// Endpoint, its datagrams skip netstack's send and receive paths (see the
// package doc).
func (s *Stack) DialUDP(laddr, raddr netip.AddrPort) (net.Conn, error) {
	if s.isClosed() {
		return nil, opErr("dial", "udp", raddr, ErrClosed)
	}
	if !raddr.Addr().IsValid() || raddr.Port() == 0 {
		return nil, opErr("dial", "udp", raddr, errors.New("invalid remote address"))
	}
	rfa, proto := fullAddr(raddr)
	var lp *tcpip.FullAddress
	if laddr.IsValid() {
		lfa, _ := fullAddr(laddr)
		lp = &lfa
	}
	c, err := s.newUDPConn(proto, lp, &rfa)
	if err != nil {
		return nil, opErr("dial", "udp", raddr, err)
	}
	return c, nil
}

func opErr(op, network string, addr netip.AddrPort, err error) error {
	var a net.Addr
	if network == "tcp" {
		a = net.TCPAddrFromAddrPort(addr)
	} else {
		a = net.UDPAddrFromAddrPort(addr)
	}
	return &net.OpError{Op: op, Net: network, Addr: a, Err: err}
}

// unwrapOp strips gonet's *net.OpError so ours is not nested in another.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

// tcpipErr turns a netstack error into a Go error. Closed and reset
// conditions wrap the errors the net package's users test for.
func tcpipErr(e tcpip.Error) error {
	switch e.(type) {
	case *tcpip.ErrClosedForSend, *tcpip.ErrClosedForReceive, *tcpip.ErrInvalidEndpointState:
		return fmt.Errorf("%s: %w", e, net.ErrClosed)
	case *tcpip.ErrPortInUse:
		return fmt.Errorf("%s: %w", e, errAddrInUse)
	case *tcpip.ErrConnectionRefused:
		// An ICMP port unreachable on a connected socket, as ECONNREFUSED
		// from a kernel one.
		return fmt.Errorf("%s: %w", e, syscall.ECONNREFUSED)
	}
	return errors.New(e.String())
}

var errAddrInUse = errors.New("address already in use")

// tcpListener maps errors after its Close, or the stack's, to net.ErrClosed,
// which is what http.Server and friends look for to stop quietly.
type tcpListener struct {
	l      *gonet.TCPListener
	s      *Stack
	closed atomic.Bool
}

var _ net.Listener = (*tcpListener)(nil)

func (l *tcpListener) Accept() (net.Conn, error) {
	c, err := l.l.Accept()
	if err != nil {
		if l.closed.Load() || l.s.isClosed() {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
		}
		return nil, err
	}
	return &tcpConn{TCPConn: c.(*gonet.TCPConn), s: l.s}, nil
}

func (l *tcpListener) Close() error {
	if l.closed.Swap(true) {
		return &net.OpError{Op: "close", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
	// Shutdown wakes blocked Accept calls; Close releases the endpoint and
	// resets connections still in the accept queue.
	l.l.Shutdown()
	return l.l.Close()
}

func (l *tcpListener) Addr() net.Addr { return l.l.Addr() }

// tcpConn reports net.ErrClosed after a local Close or the stack's.
// CloseRead, CloseWrite and the deadline methods come from gonet.TCPConn.
type tcpConn struct {
	*gonet.TCPConn
	s      *Stack
	closed atomic.Bool
}

func (c *tcpConn) isClosed() bool { return c.closed.Load() || c.s.isClosed() }

var _ net.Conn = (*tcpConn)(nil)

func (c *tcpConn) Read(b []byte) (int, error) {
	n, err := c.TCPConn.Read(b)
	if err != nil && c.isClosed() {
		err = &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: net.ErrClosed}
	}
	return n, err
}

func (c *tcpConn) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	if err != nil && c.isClosed() {
		err = &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: net.ErrClosed}
	}
	return n, err
}

func (c *tcpConn) Close() error {
	if c.closed.Swap(true) {
		return &net.OpError{Op: "close", Net: "tcp", Err: net.ErrClosed}
	}
	return c.TCPConn.Close()
}
