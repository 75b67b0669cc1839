package frontend

import (
	"net"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/engine/netapi"
	"github.com/xdpnet/xdpnet/engine/stats"
)

// fakeQueueNet is netapi.Kernel that knows the worker of the RX queue of some
// TCP connections (dataplane.Plane.WorkerFor; see its test).
type fakeQueueNet struct {
	netapi.Kernel
	workers map[[2]netip.AddrPort]int
}

func (f *fakeQueueNet) WorkerFor(local, remote netip.AddrPort) (int, bool) {
	w, ok := f.workers[[2]netip.AddrPort{local, remote}]
	return w, ok
}

// TestPickWorker checks that the frontends take the queue's worker for TCP
// and falls back to the address hash for QUIC clients and unknown flows.
func TestPickWorker(t *testing.T) {
	ap := netip.MustParseAddrPort
	cli1, fe4, be := ap("198.18.1.2:40000"), ap("198.18.1.1:8080"), ap("198.18.2.1:8080")
	e := &Env{Net: &fakeQueueNet{netapi.Kernel{N: 5}, map[[2]netip.AddrPort]int{{be, cli1}: 4}}, Workers: 5, Counters: &stats.Counters{}}
	tcp := func(a netip.AddrPort) net.Addr { return net.TCPAddrFromAddrPort(a) }
	if w := e.pickWorker(tcp(be), tcp(cli1), true); w != 4 {
		t.Errorf("pickWorker by queue = %d, want 4", w)
	}
	hashed := e.pickWorker(tcp(fe4), tcp(ap("198.18.1.2:40009")), true)
	if again := e.pickWorker(tcp(fe4), tcp(ap("198.18.1.2:40009")), true); again != hashed || hashed < 0 || hashed >= 5 {
		t.Errorf("hash fallback gave %d then %d", hashed, again)
	}
	e.pickWorker(net.UDPAddrFromAddrPort(be), net.UDPAddrFromAddrPort(cli1), false)
	if picks := e.Counters.Snapshot().WorkerPicks; picks["rx_queue"] != 1 || picks["hash"] != 3 {
		t.Errorf("picks %v; want 1 by rx_queue and 3 by hash", picks)
	}
}
