package engine

import (
	"net"
	"net/netip"
	"testing"
)

// fakeFlows is a flowQueuer that knows the queue of some flows.
type fakeFlows map[[2]netip.AddrPort]int

func (f fakeFlows) FlowQueue(local, remote netip.AddrPort) (int, bool) {
	q, ok := f[[2]netip.AddrPort{local, remote}]
	return q, ok
}

// fakeQueueNet is KernelNet whose TCP connections' workers come from an
// XDPNet's choice.
type fakeQueueNet struct {
	KernelNet
	x *XDPNet
}

func (f *fakeQueueNet) WorkerFor(local, remote netip.AddrPort) (int, bool) {
	return f.x.WorkerFor(local, remote)
}

func TestWorkerForRXQueue(t *testing.T) {
	ap := netip.MustParseAddrPort
	cli1, cli2, cli3 := ap("198.18.1.2:40000"), ap("198.18.1.2:40001"), ap("[2001:2:0:1::2]:40000")
	fe4, fe6, be := ap("198.18.1.1:8080"), ap("[2001:2:0:1::1]:8080"), ap("198.18.2.1:8080")
	// Interface veth-client: workers 0-1 (queues 0 and 1 of the endpoint);
	// veth-backend: workers 2-4.
	x := &XDPNet{workers: 5, ifs: []*xdpIf{
		{name: "veth-client", firstWorker: 0, queues: 2,
			addrs: []netip.Addr{fe4.Addr(), fe6.Addr()},
			fq:    fakeFlows{{fe4, cli1}: 1, {fe4, cli2}: 0, {fe6, cli3}: 1, {fe4, ap("198.18.1.2:40002")}: 7}},
		{name: "veth-backend", firstWorker: 2, queues: 3,
			addrs: []netip.Addr{be.Addr()},
			fq:    fakeFlows{{be, cli1}: 2}},
	}}
	for _, tc := range []struct {
		local, remote netip.AddrPort
		want          int
		ok            bool
	}{
		{fe4, cli1, 1, true},
		{fe4, cli2, 0, true},
		{fe6, cli3, 1, true},
		{netip.AddrPortFrom(netip.AddrFrom16(fe4.Addr().As16()), 8080), cli1, 1, true}, // v4-mapped local
		{be, cli1, 4, true},                     // second interface: its workers
		{fe4, ap("198.18.1.2:40009"), 0, false}, // SYN forgotten
		{fe4, ap("198.18.1.2:40002"), 0, false}, // queue out of range
		{ap("198.18.9.1:8080"), cli1, 0, false}, // not an engine address
	} {
		w, ok := x.WorkerFor(tc.local, tc.remote)
		if w != tc.want || ok != tc.ok {
			t.Errorf("WorkerFor(%v, %v) = %d, %v; want %d, %v", tc.local, tc.remote, w, ok, tc.want, tc.ok)
		}
	}

	// The engine takes the queue's worker for TCP and falls back to the
	// address hash for QUIC clients and unknown flows.
	e, err := New(&Config{}, Options{Net: &fakeQueueNet{KernelNet{N: 5}, x}})
	if err != nil {
		t.Fatal(err)
	}
	tcp := func(a netip.AddrPort) net.Addr { return net.TCPAddrFromAddrPort(a) }
	if w := e.pickWorker(tcp(be), tcp(cli1), true); w != 4 {
		t.Errorf("pickWorker by queue = %d, want 4", w)
	}
	hashed := e.pickWorker(tcp(fe4), tcp(ap("198.18.1.2:40009")), true)
	if again := e.pickWorker(tcp(fe4), tcp(ap("198.18.1.2:40009")), true); again != hashed || hashed < 0 || hashed >= 5 {
		t.Errorf("hash fallback gave %d then %d", hashed, again)
	}
	e.pickWorker(net.UDPAddrFromAddrPort(be), net.UDPAddrFromAddrPort(cli1), false)
	if s := e.Stats(); s.PicksByQueue != 1 || s.PicksByHash != 3 {
		t.Errorf("picks by queue %v, by hash %v; want 1 and 3", s.PicksByQueue, s.PicksByHash)
	}
}
