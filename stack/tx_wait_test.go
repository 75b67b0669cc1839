package stack_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// holdFrames takes every frame Alloc can give from p and returns them: the
// UMEM has no free TX frame until the caller releases them.
func holdFrames(p *stacktest.MemPort) []nic.Desc {
	var held []nic.Desc
	descs := make([]nic.Desc, 256)
	for {
		n := p.Alloc(descs)
		if n == 0 {
			return held
		}
		held = append(held, descs[:n]...)
	}
}

// TestTXWaitsForFrames: a send that finds no free UMEM frame sleeps in the
// port's WaitTX (issue 20 item 3), on both send paths (netstack's, through
// the qdisc, and the UDP fast path). A release wakes it and the datagram
// leaves with no drop; without a release it gives up after TXWait with a
// counted drop. Either way it sleeps a few times, not once per scheduler
// turn as the runtime.Gosched loop it replaces did (thousands of Allocs in
// a few milliseconds).
func TestTXWaitsForFrames(t *testing.T) {
	for _, path := range []string{"netstack", "fastpath"} {
		t.Run(path, func(t *testing.T) {
			for _, released := range []bool{true, false} {
				// Woken by a release: a TXWait far beyond the test's
				// wait, so only a wakeup can deliver the datagram.
				// Not released: a short TXWait to give up after.
				txWait := 30 * time.Second
				if !released {
					txWait = 20 * time.Millisecond
				}
				r := stacktest.NewXDPPair(t, stacktest.XDPOptions{A: stack.EndpointOptions{
					TXWait: txWait, DisableUDPFastPath: path == "netstack",
				}})
				port := r.Wires[0].A
				srv, err := r.B.ListenUDP(netip.AddrPortFrom(stacktest.AddrB4, 4433))
				if err != nil {
					t.Fatal(err)
				}
				defer srv.Close()
				cli, err := r.A.DialUDP(netip.AddrPortFrom(stacktest.AddrA4, 0), netip.AddrPortFrom(stacktest.AddrB4, 4433))
				if err != nil {
					t.Fatal(err)
				}
				defer cli.Close()
				send := func(tag string) {
					t.Helper()
					if _, err := cli.Write([]byte(tag)); err != nil {
						t.Fatalf("write %q: %v", tag, err)
					}
				}
				// The first datagram resolves the peer's MAC.
				send("before")
				expectDatagram(t, srv, "before")

				before := stack.Total(r.EPA.Stats())
				pst, _ := port.Stats()
				held := holdFrames(port)
				if len(held) == 0 {
					t.Fatal("no frame to hold")
				}
				// The fast path writes from the caller's goroutine, so
				// its Write is what waits.
				sent := make(chan error, 1)
				go func() {
					_, err := cli.Write([]byte("held"))
					sent <- err
				}()
				if released {
					testutil.WaitFor(t, "the send to wait for a frame", func() bool {
						return stack.Total(r.EPA.Stats()).TXWaits > before.TXWaits
					})
					port.Release(held)
					expectDatagram(t, srv, "held")
				} else {
					testutil.WaitFor(t, "the send to drop after TXWait", func() bool {
						return stack.Total(r.EPA.Stats()).TXDropNoFrame > before.TXDropNoFrame
					})
					port.Release(held)
				}
				if err := <-sent; err != nil {
					t.Fatalf("write %q: %v", "held", err)
				}
				after := stack.Total(r.EPA.Stats())
				pst2, _ := port.Stats()
				if got := after.TXDropNoFrame - before.TXDropNoFrame; released && got != 0 {
					t.Errorf("%d frames dropped for want of a frame, though one was released within TXWait", got)
				}
				if after.TXWaits == before.TXWaits {
					t.Error("TXWaits did not count the wait")
				}
				// A few rounds: the port's wakeups (frames some other
				// send gave back) and the last try. A busy loop makes
				// thousands.
				if rounds, allocs := after.TXWaitRounds-before.TXWaitRounds, pst2.TxAllocShort-pst.TxAllocShort; rounds == 0 || rounds > 10 || allocs > 20 {
					t.Errorf("the wait slept %d times and made %d short Allocs: want 1..10 sleeps and a few Allocs, not a busy loop", rounds, allocs)
				}
				// Recovery: frames are back, the next datagram leaves.
				send("after")
				expectDatagram(t, srv, "after")
				r.A.Close()
				if err := port.Pool().CheckConservation(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// expectDatagram reads from c until a datagram equal to tag arrives; it
// fails the test if none does within testutil.Timeout.
func expectDatagram(t *testing.T, c net.PacketConn, tag string) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(testutil.Timeout))
	for {
		n, _, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("datagram %q did not arrive within %v", tag, testutil.Timeout)
		}
		if err != nil {
			t.Fatalf("waiting for %q: %v", tag, err)
		}
		if bytes.Equal(buf[:n], []byte(tag)) {
			return
		}
	}
}
