package stack_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

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

// TestTCPConnReleaseIdle parks an accepted connection as engine/frontend
// does: a read notification, then ReleaseIdle. The notification comes when
// the peer writes, the connection reads the bytes afterwards, and a
// deadline set before ReleaseIdle is gone.
func TestTCPConnReleaseIdle(t *testing.T) {
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{})
	c1, c2, stop, err := tcpPipe(t, r, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	type idleConn interface {
		NotifyReadable(fn func()) (stop func(), ok bool)
		ReleaseIdle()
	}
	ic, ok := c2.(idleConn)
	if !ok {
		t.Fatalf("%T has no NotifyReadable and ReleaseIdle", c2)
	}
	c2.SetReadDeadline(time.Unix(1, 0))
	if _, err := c2.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("read past its deadline: %v; want a timeout", err)
	}
	readable := make(chan struct{})
	unwatch, ok := ic.NotifyReadable(func() { close(readable) })
	if !ok {
		t.Fatal("NotifyReadable: not supported")
	}
	ic.ReleaseIdle()
	if _, err := c1.Write([]byte("next")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-readable:
	case <-time.After(10 * time.Second):
		t.Fatal("no read notification after the peer wrote")
	}
	unwatch()
	b := make([]byte, 4)
	if _, err := io.ReadFull(c2, b); err != nil || string(b) != "next" {
		t.Fatalf("read after ReleaseIdle: %q, %v; want \"next\"", b, err)
	}
}

// TestListenTCPReuseAddress: a listener opens again on the address of a
// closed one while that one's accepted connection is open, and after the
// accepted end closed first (TIME-WAIT), as a kernel listener with Go's
// SO_REUSEADDR does; two listeners on one address still conflict.
func TestListenTCPReuseAddress(t *testing.T) {
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{})
	addr := netip.AddrPortFrom(stacktest.AddrA4, 2000)
	c1, c2, stop, err := tcpPipe(t, r, addr.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	l, err := r.A.ListenTCP(addr)
	if err != nil {
		t.Fatalf("listen again beside an open accepted connection: %v", err)
	}
	if l2, err := r.A.ListenTCP(addr); err == nil {
		l2.Close()
		t.Error("two listeners bound one address")
	}
	l.Close()
	// The accepted end closes first: its side waits in TIME-WAIT.
	c2.Close()
	if _, err := io.ReadAll(c1); err != nil {
		t.Fatal(err)
	}
	c1.Close()
	l, err = r.A.ListenTCP(addr)
	if err != nil {
		t.Fatalf("listen again after the accepted end closed: %v", err)
	}
	l.Close()
}
