package stack_test

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// TestXDPTransferACKFilter moves verified streams both ways between two
// endpoints with the transmit ACK filter on, both families: the ACKs it
// drops must cost no data.
func TestXDPTransferACKFilter(t *testing.T) {
	stack.SetACKFilter(t, true)
	size := 8 << 20
	if raceEnabled {
		size = 1 << 20
	}
	for _, addr := range []netip.Addr{stacktest.AddrA4, stacktest.AddrA6} {
		t.Run(addr.String(), func(t *testing.T) {
			before := stack.ACKsFiltered()
			r := stacktest.NewXDPPair(t, stacktest.XDPOptions{Queues: 1})
			l, err := r.A.ListenTCP(netip.AddrPortFrom(addr, 5201))
			if err != nil {
				t.Fatal(err)
			}
			serveHashAndSend(t, l, size)
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					transfer(t, r.B, netip.AddrPortFrom(addr, 5201), size, size)
				}()
			}
			wg.Wait()
			t.Logf("ACKs filtered: %d; a %+v", stack.ACKsFiltered()-before, stack.Total(r.EPA.Stats()))
			if !t.Failed() {
				checkFramesHome(t, r)
			}
		})
	}
}
