package dataplane

import (
	"slices"
	"testing"

	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// TestStatsDrops checks that the drops of the netstack and of each
// endpoint queue reach the snapshot, under the NIC's queue ids: over
// in-memory ports, a bad TCP checksum on the second queue and a datagram
// for a closed port.
func TestStatsDrops(t *testing.T) {
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{Queues: 2})
	x := &Plane{st: r.A, ifs: []*xdpIf{{name: "mem0", ep: r.EPA, queueIDs: []int{3, 5}}}}
	batches, err := stacktest.MalformedBatches(stacktest.Targets{
		SrcMAC: stacktest.MACB, DstMAC: stacktest.MACA, Src: stacktest.AddrB4, Dst: stacktest.AddrA4,
		OpenTCP: 9000, ClosedTCP: 81, ClosedUDP: 9,
	}, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		switch b.Name {
		case "bad-tcp-checksum":
			for _, f := range b.Frames {
				r.Wires[1].A.Inject(f)
			}
		case "udp-closed-port":
			for _, f := range b.Frames {
				r.Wires[0].A.Inject(f)
			}
		}
	}
	// Wait for the frames to be taken and handled: the two reasons are
	// the snapshot's business (package stack tests them); here they only
	// have to show.
	counted := func() bool {
		var nsDrops uint64
		for _, d := range r.A.Drops() {
			if d.Reason == "udp_no_endpoint" {
				nsDrops = d.Count
			}
		}
		return r.EPA.Stats()[1].RXDropChecksumTCP == 4 && nsDrops == 4
	}
	if !testutil.Eventually(counted) {
		t.Fatalf("injected frames not counted: queue 1 %+v, netstack %+v", r.EPA.Stats()[1], r.A.Drops())
	}

	s := x.Stats()
	is := s.Interfaces["mem0"]
	if is == nil || len(is.Queues) != 2 || is.Queues["3"] == nil || is.Queues["5"] == nil {
		t.Fatalf("queues of mem0: %+v, want the NIC's ids 3 and 5", is)
	}
	for i, qs := range r.EPA.Stats() {
		if got := is.Queues[[]string{"3", "5"}[i]].Endpoint; !slices.Equal(got.Drops(), qs.Drops()) {
			t.Errorf("endpoint queue %d drops: snapshot %v, endpoint %v", i, got.Drops(), qs.Drops())
		}
	}
	if v := is.Queues["5"].Endpoint.RXDropChecksumTCP; v != 4 {
		t.Errorf("checksum_tcp on queue 5: %v, want 4", v)
	}
	for _, d := range r.A.Drops() {
		if v := s.NetstackDrops[d.Dir][d.Reason]; v != d.Count {
			t.Errorf("netstack drops %s/%s: snapshot %d, stack %d", d.Dir, d.Reason, v, d.Count)
		}
	}
	if v := s.NetstackDrops["rx"]["udp_no_endpoint"]; v != 4 {
		t.Errorf("udp_no_endpoint: %v, want 4", v)
	}
	if tot := s.Totals(); tot.EndpointDrops < 4 || tot.NetstackDrops < 4 {
		t.Errorf("totals %+v: want at least 4 endpoint and 4 netstack drops", tot)
	}
}
