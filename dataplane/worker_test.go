package dataplane

import (
	"net/netip"
	"testing"
)

// fakeFlows is a flowQueuer that knows the queue of some flows.
type fakeFlows map[[2]netip.AddrPort]int

func (f fakeFlows) FlowQueue(local, remote netip.AddrPort) (int, bool) {
	q, ok := f[[2]netip.AddrPort{local, remote}]
	return q, ok
}

func TestWorkerForRXQueue(t *testing.T) {
	ap := netip.MustParseAddrPort
	cli1, cli2, cli3 := ap("198.18.1.2:40000"), ap("198.18.1.2:40001"), ap("[2001:2:0:1::2]:40000")
	fe4, fe6, be := ap("198.18.1.1:8080"), ap("[2001:2:0:1::1]:8080"), ap("198.18.2.1:8080")
	// Interface veth-client: workers 0-1 (queues 0 and 1 of the endpoint);
	// veth-backend: workers 2-4.
	x := &Plane{workers: 5, ifs: []*xdpIf{
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

}
