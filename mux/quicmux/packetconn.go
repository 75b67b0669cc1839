package quicmux

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// ConnectedPacketConn adapts a connected UDP socket (the engine's
// stack.DialUDP, or net.DialUDP) to the net.PacketConn that QUIC needs, for
// a client connection to that one peer.
//
// On the netstack this is the cheapest path quic-go can get: an unconnected
// socket's WriteTo looks the route up for every datagram, a connected one
// reuses the route it resolved at connect time (and the stack's UDP fast
// path). NewTransport adds batched sends (segmentingPacketConn). Reads
// return the peer's address without allocating one per datagram.
func ConnectedPacketConn(c net.Conn) (net.PacketConn, error) {
	raddr := c.RemoteAddr()
	if raddr == nil {
		return nil, fmt.Errorf("mux: %T is not connected", c)
	}
	return &connectedPacketConn{c: c, raddr: raddr}, nil
}

type connectedPacketConn struct {
	c     net.Conn
	raddr net.Addr
}

var _ net.PacketConn = (*connectedPacketConn)(nil)

func (p *connectedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := p.c.Read(b)
	return n, p.raddr, err
}

// WriteTo sends to the connected peer; quic-go sends nowhere else on a
// client connection.
func (p *connectedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if addr != p.raddr && !sameAddr(addr, p.raddr) {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: p.c.LocalAddr(), Addr: addr,
			Err: fmt.Errorf("socket is connected to %s", p.raddr)}
	}
	return p.c.Write(b)
}

// sameAddr compares without allocating for UDP addresses: quic-go passes
// the address it was dialed with, often not the socket's own *net.UDPAddr.
func sameAddr(a, b net.Addr) bool {
	ua, ok := a.(*net.UDPAddr)
	ub, ok2 := b.(*net.UDPAddr)
	if ok && ok2 && ua != nil && ub != nil {
		return ua.Port == ub.Port && ua.IP.Equal(ub.IP) && ua.Zone == ub.Zone
	}
	return a != nil && b != nil && a.String() == b.String()
}

func (p *connectedPacketConn) Close() error                       { return p.c.Close() }
func (p *connectedPacketConn) LocalAddr() net.Addr                { return p.c.LocalAddr() }
func (p *connectedPacketConn) SetDeadline(t time.Time) error      { return p.c.SetDeadline(t) }
func (p *connectedPacketConn) SetReadDeadline(t time.Time) error  { return p.c.SetReadDeadline(t) }
func (p *connectedPacketConn) SetWriteDeadline(t time.Time) error { return p.c.SetWriteDeadline(t) }

// SetReadBuffer and SetWriteBuffer pass quic-go's buffer sizing through
// when the socket supports it.
func (p *connectedPacketConn) SetReadBuffer(n int) error {
	if s, ok := p.c.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return fmt.Errorf("mux: %T cannot size its receive buffer", p.c)
}

func (p *connectedPacketConn) SetWriteBuffer(n int) error {
	if s, ok := p.c.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return fmt.Errorf("mux: %T cannot size its send buffer", p.c)
}

// maxWriteBlock bounds how long one datagram write may wait for room in a
// socket's send buffer before the datagram is dropped (see
// boundedPacketConn).
const (
	maxWriteBlock   = time.Second
	stuckWriteBlock = 10 * time.Millisecond
)

// boundedPacketConn guards quic-go against a socket whose writes block for
// good. quic-go's send loop writes datagrams one at a time and closes the
// connection only after its last write returned; a netstack UDP socket
// blocks a write while its send buffer is full, so a send buffer that never
// drains (a stalled or leaking link below) would hang the connection and
// its Close forever. A datagram that waited maxWriteBlock is dropped and
// counted instead, as a full NIC queue drops: QUIC's loss recovery resends
// what matters, and a path that stays blocked ends in the idle timeout with
// a clear error.
type boundedPacketConn struct {
	net.PacketConn
	// deadlineAt is when the write deadline was last pushed forward (unix
	// ns); the deadline is refreshed at most every maxWriteBlock/2 so that
	// the common write does not arm a timer.
	deadlineAt atomic.Int64
	// stuck: the last write timed out; writes wait stuckWriteBlock only
	// until one succeeds.
	stuck   atomic.Bool
	dropped *atomic.Uint64
	// unreachable counts ICMP errors passed over by ReadFrom; notify is
	// called after each.
	unreachable *atomic.Uint64
	notify      func()
	// readErr is the error that ended reading, which quic-go takes as the
	// end of the transport.
	readErr atomic.Pointer[error]
}

// ReadFrom passes over the errors an ICMP message leaves on a connected
// socket (port, host or network unreachable, RFC 1122 section 4.1.3.3):
// quic-go ends a transport, and every connection on it, on the first read
// error it does not deem temporary, and one origin restarting must not
// take the socket down with it. The dial or connection that needed the
// peer still fails, by its own timeout. Any other error is kept for Err.
func (p *boundedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := p.PacketConn.ReadFrom(b)
		if err == nil {
			return n, addr, nil
		}
		if isUnreachable(err) {
			p.unreachable.Add(1)
			p.notify()
			continue
		}
		p.readErr.CompareAndSwap(nil, &err)
		return n, addr, err
	}
}

// isUnreachable reports an error a UDP socket returns after an ICMP
// destination-unreachable message.
func isUnreachable(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTDOWN)
}

func (p *boundedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	now := time.Now()
	switch {
	case p.stuck.Load():
		// Probe briefly whether the socket drains instead of waiting a
		// full maxWriteBlock for each queued datagram.
		p.deadlineAt.Store(0)
		p.PacketConn.SetWriteDeadline(now.Add(stuckWriteBlock))
	case now.UnixNano()-p.deadlineAt.Load() > int64(maxWriteBlock/2):
		p.deadlineAt.Store(now.UnixNano())
		p.PacketConn.SetWriteDeadline(now.Add(maxWriteBlock))
	}
	n, err := p.PacketConn.WriteTo(b, addr)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		p.dropped.Add(1)
		p.stuck.Store(true)
		return len(b), nil
	}
	if err == nil && p.stuck.Load() {
		p.stuck.Store(false)
	}
	return n, err
}

// SetWriteDeadline is owned by WriteTo; quic-go does not set one.
func (p *boundedPacketConn) SetWriteDeadline(time.Time) error { return nil }

func (p *boundedPacketConn) SetDeadline(t time.Time) error { return p.PacketConn.SetReadDeadline(t) }

// SetReadBuffer and SetWriteBuffer pass quic-go's buffer sizing through
// when the socket supports it.
func (p *boundedPacketConn) SetReadBuffer(n int) error {
	if s, ok := p.PacketConn.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return fmt.Errorf("mux: %T cannot size its receive buffer", p.PacketConn)
}

func (p *boundedPacketConn) SetWriteBuffer(n int) error {
	if s, ok := p.PacketConn.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return fmt.Errorf("mux: %T cannot size its send buffer", p.PacketConn)
}
