package admin

import (
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/engine/stats"
	"github.com/xdpnet/xdpnet/stack"
)

// labels returns m's labels as a map.
func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// TestDataPlaneDropMetrics checks that every drop reason of the netstack
// and of each endpoint queue in a data-plane snapshot reaches the
// collector under the reason stack.QueueStats.Drops and stack.Stack.Drops
// give it (the foreignTags labels must match them), under the queue's
// label, with the snapshot's value. The data plane's own test
// (dataplane.TestStatsDrops) checks that real drops reach the snapshot.
func TestDataPlaneDropMetrics(t *testing.T) {
	var qs stack.QueueStats
	v := reflect.ValueOf(&qs).Elem()
	for i := range v.NumField() {
		if strings.Contains(v.Type().Field(i).Name, "Drop") {
			v.Field(i).SetUint(uint64(100 + i))
		}
	}
	s := &dataplane.Stats{
		Interfaces: map[string]*dataplane.InterfaceStats{"mem0": {Queues: map[string]*dataplane.QueueStats{"5": {Endpoint: qs}}}},
		NetstackDrops: map[string]map[string]uint64{
			"rx": {"udp_no_endpoint": 4, "tcp_checksum": 7},
			"tx": {"no_route": 9},
		},
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(snapshotCollector{snapshot: func() stats.Stats { return stats.Stats{Net: s} }})
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
	for dir, byReason := range s.NetstackDrops {
		for reason, n := range byReason {
			k := "xdpnet_netstack_drops_total " + dir + "/" + reason + "@"
			if v, ok := got[k]; !ok || v != float64(n) {
				t.Errorf("%s: exported %v (%v), snapshot %d", k, v, ok, n)
			}
		}
	}
	drops := qs.Drops()
	if len(drops) == 0 {
		t.Fatal("stack.QueueStats.Drops gave no reasons")
	}
	for _, d := range drops {
		k := "xdpnet_endpoint_drops_total " + d.Dir + "/" + d.Reason + "@5"
		if v, ok := got[k]; !ok || v != float64(d.Count) {
			t.Errorf("%s: exported %v (%v), snapshot %d", k, v, ok, d.Count)
		}
	}
}
