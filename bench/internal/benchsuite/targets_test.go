package benchsuite

import (
	"bytes"
	"strings"
	"testing"
)

// TestTargetsFromTheRun: the targets table quotes the run's own medians,
// says which condition missed, and is left out when the run measured none.
func TestTargetsFromTheRun(t *testing.T) {
	figs := append(Aggregate("github.com/xdpnet/xdpnet/reuse", []Result{
		{Name: "BenchmarkAttachDetachHit/impl=xdpnet", Metrics: map[string]float64{"cpu-ns/op": 201, "allocs/op": 0}},
		{Name: "BenchmarkAttachDetachHit/impl=xdpnet", Metrics: map[string]float64{"cpu-ns/op": 276, "allocs/op": 0}},
		{Name: "BenchmarkAttachDetachHit/impl=xdpnet", Metrics: map[string]float64{"cpu-ns/op": 170, "allocs/op": 0}},
		{Name: "BenchmarkAttachDetachHit/impl=baseline", Metrics: map[string]float64{"cpu-ns/op": 70}},
	}), Aggregate("github.com/xdpnet/xdpnet/stack", []Result{
		{Name: "BenchmarkTCPBulk/client=iperf3/impl=xdpnet", Metrics: map[string]float64{"Gbit/s": 3}},
		{Name: "BenchmarkTCPBulk/client=iperf3/impl=gvisor-xdp", Metrics: map[string]float64{"Gbit/s": 0.75}},
		{Name: "BenchmarkTCPBulk/client=go/impl=xdpnet", Metrics: map[string]float64{"Gbit/s": 2}},
		{Name: "BenchmarkTCPBulk/client=go/impl=gvisor-xdp", Metrics: map[string]float64{"Gbit/s": 1}},
	})...)
	targets := []Target{
		{Issue: "#6", Figure: "attach", Goal: "≤ 200 ns, 0 allocs", Checks: []Check{
			{Package: "reuse", Bench: "BenchmarkAttachDetachHit", Impl: "xdpnet", Unit: "cpu-ns/op", Side: AtMost, Bound: 200},
			{Package: "reuse", Bench: "BenchmarkAttachDetachHit", Impl: "xdpnet", Unit: "allocs/op", Side: AtMost, Bound: 0},
		}},
		{Issue: "#4", Figure: "bulk", Goal: "≥ 3×", Checks: []Check{
			{Package: "stack", Bench: "BenchmarkTCPBulk", Impl: "xdpnet", Baseline: "gvisor-xdp", Unit: "Gbit/s", Side: AtLeast, Bound: 3},
		}},
		{Issue: "#9", Figure: "absent", Goal: "≥ 1×", Checks: []Check{
			{Package: "nic", Bench: "BenchmarkNone", Impl: "xdpnet", Unit: "pps", Side: AtLeast, Bound: 1},
		}},
	}
	var b bytes.Buffer
	targetsMarkdown(&b, targets, figs)
	for _, want := range []string{
		// The median of the three runs, not the best.
		"| #6 | attach | ≤ 200 ns, 0 allocs | impl=xdpnet: 201 cpu-ns/op, 0 allocs/op | not met: impl=xdpnet cpu-ns/op |",
		"| #4 | bulk | ≥ 3× | impl=xdpnet client=iperf3: ×4 (3 vs gvisor-xdp 0.75 Gbit/s); impl=xdpnet client=go: ×2 (2 vs gvisor-xdp 1 Gbit/s) | not met: impl=xdpnet client=go Gbit/s |",
		"| #9 | absent | ≥ 1× |  | not measured in this run |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("targets table lacks %q:\n%s", want, b.String())
		}
	}

	b.Reset()
	targetsMarkdown(&b, targets[2:], figs)
	if b.Len() != 0 {
		t.Errorf("a run that measured no target got a table:\n%s", b.String())
	}
}
