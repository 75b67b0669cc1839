package mux

import (
	"fmt"
	"net"
	"time"
)

// ConnectedPacketConn adapts a connected UDP socket (the engine's
// stack.DialUDP, or net.DialUDP) to the net.PacketConn that QUIC needs, for
// a client connection to that one peer.
//
// On the netstack this is the cheapest path quic-go can get: an unconnected
// socket's WriteTo looks the route up for every datagram, a connected one
// reuses the route it resolved at connect time. quic-go's batched I/O and
// GSO need a kernel socket's file descriptor, so they stay off either way.
// Reads return the peer's address without allocating one per datagram.
func ConnectedPacketConn(c net.Conn) (net.PacketConn, error) {
	raddr := c.RemoteAddr()
	if raddr == nil {
		return nil, fmt.Errorf("mux: %T is not connected", c)
	}
	return &connectedPacketConn{c: c, raddr: raddr, rstr: raddr.String()}, nil
}

type connectedPacketConn struct {
	c     net.Conn
	raddr net.Addr
	rstr  string
}

var _ net.PacketConn = (*connectedPacketConn)(nil)

func (p *connectedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := p.c.Read(b)
	return n, p.raddr, err
}

// WriteTo sends to the connected peer; quic-go sends nowhere else on a
// client connection.
func (p *connectedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if addr != p.raddr && addr.String() != p.rstr {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: p.c.LocalAddr(), Addr: addr,
			Err: fmt.Errorf("socket is connected to %s", p.rstr)}
	}
	return p.c.Write(b)
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
