package benchsuite

import (
	"math"
	"testing"
)

// TestPairGainDirection pairs figures shaped like the repository's own
// (nic's L2 echo, engine's proxy): a gain above 1 must mean the
// implementation did better, whatever the unit, and a unit whose name
// does not say which way is better gets no gain rather than a guessed one.
func TestPairGainDirection(t *testing.T) {
	figs := Aggregate("nic", []Result{
		{Name: "BenchmarkL2Echo/impl=xdpnet/size=64", Procs: 2, Metrics: map[string]float64{
			"rx-pps": 473e3, "echoed-%": 96, "drop-fill-empty-%": 0.5, "cpu-ns/echo": 2000,
			"cpu-vs-baseline": 1.6, "lost/sent": 0.01, "p99-ms": 2, "cpu-ratio": 1.2, "pkts/wait": 30,
		}},
		{Name: "BenchmarkL2Echo/impl=baseline/size=64", Procs: 2, Metrics: map[string]float64{
			"rx-pps": 1.59e6, "echoed-%": 21, "drop-fill-empty-%": 70, "cpu-ns/echo": 3200,
			"cpu-vs-baseline": 1, "lost/sent": 0.04, "p99-ms": 4, "cpu-ratio": 1, "pkts/wait": 12000,
		}},
	})
	cmps := Pair(figs)
	if len(cmps) != 1 {
		t.Fatalf("comparisons: %+v", cmps)
	}
	g := cmps[0].Gain
	for unit, want := range map[string]float64{
		"rx-pps":            473e3 / 1.59e6, // a rate: impl/baseline
		"echoed-%":          96.0 / 21,      // a share of frames echoed: more is better
		"drop-fill-empty-%": 70 / 0.5,       // a share dropped: less is better
		"cpu-ns/echo":       3200.0 / 2000,
		"cpu-vs-baseline":   1 / 1.6,
		"lost/sent":         4,
		"p99-ms":            2,
		"cpu-ratio":         1.2, // baseline CPU over this CPU
	} {
		if got, ok := g[unit]; !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("gain %s = %v (present %v), want %v", unit, got, ok, want)
		}
	}
	if got, ok := g["pkts/wait"]; ok {
		t.Errorf("pkts/wait (no direction) got gain %v", got)
	}
}
