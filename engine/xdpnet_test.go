package engine_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpnet/xdpnet/engine/enginelab"
)

// TestXDPNetTXKicks checks the AF_XDP counters the collector exports after
// proxied traffic: every interface sent packets, and no more TX kicks than
// packets (the queueing discipline in front of the endpoint batches sends;
// one kick per packet is the worst case).
func TestXDPNetTXKicks(t *testing.T) {
	env := startLab(t, "xdp", enginelab.Options{})
	c := env.HTTPClient(8, false)
	defer c.CloseIdleConnections()
	if failed, err := get(t, c, env.FrontendURL("http")+"/bytes/1024", 200, 8); failed > 0 {
		t.Fatalf("%d of 200 requests failed: %v", failed, err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(env.Net.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	tx := map[string]float64{}
	kicks := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case mf.GetName() == "xdpnet_xsk_packets_total" && labels["dir"] == "tx":
				tx[labels["interface"]] = m.GetCounter().GetValue()
			case mf.GetName() == "xdpnet_xsk_tx_kicks_total":
				kicks[labels["interface"]] = m.GetCounter().GetValue()
			}
		}
	}
	if len(tx) != len(env.Config.Interfaces) {
		t.Fatalf("TX packet counters for %d interfaces, want %d: %v", len(tx), len(env.Config.Interfaces), tx)
	}
	for name, n := range tx {
		k, ok := kicks[name]
		if !ok || n == 0 || k == 0 || k > n {
			t.Errorf("interface %s: %v TX kicks (exported %v) for %v TX packets; want 0 < kicks <= packets", name, k, ok, n)
		}
		t.Logf("interface %s: %.0f TX packets, %.0f kicks (%.2f per packet)", name, n, k, k/n)
	}
}
