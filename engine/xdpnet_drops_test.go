package engine

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// labels returns m's labels as a map.
func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// TestXDPCollectorDrops checks that every drop reason of the netstack and
// of each endpoint queue reaches the collector, under the NIC's queue ids,
// with the snapshot's value: over in-memory ports, a bad TCP checksum on
// the second queue and a datagram for a closed port.
func TestXDPCollectorDrops(t *testing.T) {
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{Queues: 2})
	x := &XDPNet{st: r.A, ifs: []*xdpIf{{name: "mem0", ep: r.EPA, queueIDs: []int{3, 5}}}}
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
	counted := testutil.Eventually(func() bool {
		var nsDrops uint64
		for _, d := range r.A.Drops() {
			if d.Reason == "udp_no_endpoint" {
				nsDrops = d.Count
			}
		}
		return r.EPA.Stats()[1].RXDropChecksumTCP == 4 && nsDrops == 4
	})
	if !counted {
		t.Fatalf("injected frames not counted within %v: queue 1 %+v, netstack %+v", testutil.Timeout, r.EPA.Stats()[1], r.A.Drops())
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(snapshotCollector{snapshot: func() Stats { return Stats{Net: x.DataPlaneStats()} }})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{} // "family dir/reason@queue"
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := labels(m)
			got[mf.GetName()+" "+l["dir"]+"/"+l["reason"]+"@"+l["queue"]] = m.GetCounter().GetValue()
		}
	}
	for _, d := range r.A.Drops() {
		k := "xdpnet_netstack_drops_total " + d.Dir + "/" + d.Reason + "@"
		if v, ok := got[k]; !ok || v != float64(d.Count) {
			t.Errorf("%s: exported %v (%v), snapshot %d", k, v, ok, d.Count)
		}
	}
	for i, qs := range r.EPA.Stats() {
		for _, d := range qs.Drops() {
			k := "xdpnet_endpoint_drops_total " + d.Dir + "/" + d.Reason + "@" + []string{"3", "5"}[i]
			if v, ok := got[k]; !ok || v != float64(d.Count) {
				t.Errorf("%s: exported %v (%v), snapshot %d", k, v, ok, d.Count)
			}
		}
	}
	if v := got["xdpnet_endpoint_drops_total rx/checksum_tcp@5"]; v != 4 {
		t.Errorf("checksum_tcp on queue 5: %v, want 4", v)
	}
	if v := got["xdpnet_netstack_drops_total rx/udp_no_endpoint@"]; v != 4 {
		t.Errorf("udp_no_endpoint: %v, want 4", v)
	}
}
