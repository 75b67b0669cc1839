package stack_test

import (
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

// A blocking read woken by data, and deadlines set and moved, allocate
// nothing once the connection has made its timer (gonet's adapter made a
// channel and wait entry per blocking read and a timer per deadline).
func TestTCPConnIOAllocations(t *testing.T) {
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{})
	c1, c2, stop, err := tcpPipe(t, r, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	buf := make([]byte, 64)
	msg := []byte("ping")
	round := func() {
		c2.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := c1.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Read(buf); err != nil {
			t.Fatal(err)
		}
		c2.SetReadDeadline(time.Time{})
	}
	round() // the timer and wake-ups exist from here on
	// Netstack itself allocates for the segment (packet buffers, views);
	// what is left for the adapter is bounded by comparing with writes
	// and reads that never block nor set deadlines.
	plain := testing.AllocsPerRun(200, func() {
		if _, err := c1.Write(msg); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(msg); {
			k, err := c2.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			n += k
		}
	})
	with := testing.AllocsPerRun(200, round)
	t.Logf("allocations per round: %.1f plain, %.1f with deadlines and a blocking read", plain, with)
	if with > plain+1 {
		t.Errorf("deadlines and a blocking read cost %.1f allocations per round over %.1f", with-plain, plain)
	}
}
