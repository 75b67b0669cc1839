package stack_test

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// TestUDPSendBufferDrainsThroughTXFaults: while the TX ring takes nothing
// or the link is down, a UDP socket's datagrams are dropped below the
// socket (counted), and every drop releases the datagram's share of the
// send buffer: writes keep completing, none blocks for good, and once the
// fault is gone datagrams arrive again. Closing the stack afterwards gives
// every frame back. Both send paths: netstack's (send buffer, qdisc) and the
// fast path, whose drops the kicker counts after the writes returned.
func TestUDPSendBufferDrainsThroughTXFaults(t *testing.T) {
	writes := 400 // over two send buffers' worth
	if raceEnabled {
		writes = 300
	}
	for _, fault := range []struct {
		name string
		set  func(r *stacktest.XDPResult, on bool)
	}{
		{"ring-full", func(r *stacktest.XDPResult, on bool) {
			for _, w := range r.Wires {
				w.A.Stall(on)
			}
		}},
		{"link-down", func(r *stacktest.XDPResult, on bool) { r.SetUp(!on) }},
	} {
		for _, path := range []string{"netstack", "fastpath"} {
			t.Run(fault.name+"/"+path, func(t *testing.T) {
				r := stacktest.NewXDPPair(t, stacktest.XDPOptions{Queues: 2, A: stack.EndpointOptions{DisableUDPFastPath: path == "netstack"}})
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
				// received reads until a datagram starting with tag
				// arrives, and reports whether one did within wait.
				received := func(tag []byte, wait time.Duration) bool {
					t.Helper()
					buf := make([]byte, 2048)
					srv.SetReadDeadline(time.Now().Add(wait))
					for {
						n, _, err := srv.ReadFrom(buf)
						if errors.Is(err, os.ErrDeadlineExceeded) {
							return false
						}
						if err != nil {
							t.Fatalf("waiting for %q: %v", tag, err)
						}
						if bytes.HasPrefix(buf[:n], tag) {
							return true
						}
					}
				}
				write := func(tag []byte, i int) {
					t.Helper()
					b := make([]byte, 1200)
					copy(b, tag)
					// Far beyond the TX wait of every batch in the send
					// buffer: only a buffer that never drains reaches it.
					cli.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := cli.Write(b); err != nil {
						t.Fatalf("write %d %q: %v", i, tag, err)
					}
				}
				// Resolve the peer's MAC first: with the link down, ARP
				// would fail and the socket report it, not the fault.
				write([]byte("before"), 0)
				if !received([]byte("before"), 10*time.Second) {
					t.Fatal("the first datagram did not arrive in 10s")
				}

				before := stack.Total(r.EPA.Stats())
				fault.set(r, true)
				for i := range writes {
					write([]byte("during"), i)
				}
				testutil.WaitFor(t, "TX drops during the fault", func() bool {
					return stack.Total(r.EPA.Stats()).TXDrops() > before.TXDrops()
				})
				fault.set(r, false)
				if fast := stack.Total(r.EPA.Stats()).TXUDPFast; (path == "fastpath") != (fast > 0) {
					t.Errorf("%s: %d datagrams took the fast path", path, fast)
				}
				// The datagrams the fault held back leave in a burst
				// once it is gone, which can overflow the server's
				// receive buffer (UDP drops, counted) along with the
				// first ones sent after: send until one arrives.
				for i := 0; ; i++ {
					if i == 100 {
						t.Fatal("no datagram arrived in 100 tries after the fault")
					}
					write([]byte("after"), i)
					if received([]byte("after"), 100*time.Millisecond) {
						break
					}
				}

				r.A.Close()
				if err := r.EPA.CloseErr(); err != nil {
					t.Error(err)
				}
				for i, w := range r.Wires {
					if err := w.A.Pool().CheckConservation(); err != nil {
						t.Errorf("queue %d: %v", i, err)
					}
				}
			})
		}
	}
}
