package stack_test

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/nettest"

	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// tcpPipe connects a dialed and an accepted netstack TCP connection over an
// in-memory AF_XDP pair; port picks the listener's port.
func tcpPipe(t *testing.T, r *stacktest.XDPResult, port uint16) (c1, c2 net.Conn, stop func(), err error) {
	l, err := r.A.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, port))
	if err != nil {
		return nil, nil, nil, err
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c1, err = r.B.DialTCP(testCtx(t), netip.AddrPortFrom(stacktest.AddrA4, port))
	if err != nil {
		return nil, nil, nil, err
	}
	c2 = <-accepted
	if c2 == nil {
		c1.Close()
		return nil, nil, nil, net.ErrClosed
	}
	return c1, c2, func() { c1.Close(); c2.Close() }, nil
}

// TestTCPConnConformance runs x/net's net.Conn conformance tests (deadlines
// past, future and moved while blocked, concurrent I/O, Close waking
// blocked calls, half-close data flow) on the stack's TCP connections, both
// as dialed and as accepted end.
func TestTCPConnConformance(t *testing.T) {
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{})
	port := uint16(1000)
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
		port++
		return tcpPipe(t, r, port)
	})
}
