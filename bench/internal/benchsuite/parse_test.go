package benchsuite

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

const sampleOutput = `goos: linux
goarch: amd64
pkg: github.com/xdpnet/xdpnet/nic
cpu: AMD EPYC 7B13
BenchmarkRecv/impl=xdpnet/size=64-2         	 2000000	       410.0 ns/op	   2430000 pps	       0 B/op	       0 allocs/op
BenchmarkRecv/impl=baseline/size=64-2       	  500000	      1900 ns/op	    520000 pps	      32 B/op	       1 allocs/op
BenchmarkRecv/impl=xdpnet/size=1518-2       	 1000000	       900.0 ns/op	   1100000 pps
BenchmarkRecv/impl=baseline/size=1518-2     	  400000	      2500 ns/op	    400000 pps
some log line from the benchmark
BenchmarkPlain   	 1000	 12.5 ns/op
BenchmarkZeroCopy
    nic_test.go:42: feature not supported here: zero-copy: not supported
--- SKIP: BenchmarkZeroCopy
--- FAIL: BenchmarkBroken/impl=xdpnet
    nic_test.go:50: boom
FAIL
`

func TestParse(t *testing.T) {
	out, err := Parse(strings.NewReader(sampleOutput))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(out.Results), 5; got != want {
		t.Fatalf("results: got %d, want %d: %+v", got, want, out.Results)
	}
	r := out.Results[0]
	if r.Name != "BenchmarkRecv/impl=xdpnet/size=64" || r.Procs != 2 || r.N != 2000000 {
		t.Errorf("first result: %+v", r)
	}
	if r.Metrics["pps"] != 2430000 || r.Metrics["ns/op"] != 410 || r.Metrics["allocs/op"] != 0 {
		t.Errorf("metrics: %v", r.Metrics)
	}
	if p := r.Params(); p["impl"] != "xdpnet" || p["size"] != "64" {
		t.Errorf("params: %v", p)
	}
	if r.Top() != "BenchmarkRecv" {
		t.Errorf("top: %q", r.Top())
	}
	if out.Results[4].Name != "BenchmarkPlain" || out.Results[4].Procs != 1 {
		t.Errorf("plain: %+v", out.Results[4])
	}
	if out.CPU != "AMD EPYC 7B13" || !out.Failed {
		t.Errorf("cpu %q failed %v", out.CPU, out.Failed)
	}
	want := []Outcome{
		{Name: "BenchmarkZeroCopy", Status: "skip", Reason: "nic_test.go:42: feature not supported here: zero-copy: not supported"},
		{Name: "BenchmarkBroken/impl=xdpnet", Status: "fail", Reason: "nic_test.go:50: boom"},
	}
	if len(out.Outcomes) != len(want) {
		t.Fatalf("outcomes: %+v", out.Outcomes)
	}
	for i := range want {
		if out.Outcomes[i] != want[i] {
			t.Errorf("outcome %d: got %+v, want %+v", i, out.Outcomes[i], want[i])
		}
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	for _, l := range []string{
		"BenchmarkX-2 notanumber 1 ns/op",
		"BenchmarkX-2 10 1",         // value without unit
		"BenchmarkX-2 10 abc ns/op", // bad value
		"BenchmarkX-2 0 1 ns/op",    // no iterations
		"Benchmarks are fun, said no one",
	} {
		if _, ok := parseResult(l); ok {
			t.Errorf("parsed %q", l)
		}
	}
}

func TestSplitProcs(t *testing.T) {
	for in, want := range map[string]struct {
		name  string
		procs int
	}{
		"BenchmarkX-8":               {"BenchmarkX", 8},
		"BenchmarkX":                 {"BenchmarkX", 1},
		"BenchmarkX/mode=skb-copy":   {"BenchmarkX/mode=skb-copy", 1},
		"BenchmarkX/mode=skb-copy-2": {"BenchmarkX/mode=skb-copy", 2},
	} {
		n, p := splitProcs(in)
		if n != want.name || p != want.procs {
			t.Errorf("splitProcs(%q) = %q, %d; want %q, %d", in, n, p, want.name, want.procs)
		}
	}
}

func TestAggregateAndPair(t *testing.T) {
	res := []Result{
		{Name: "BenchmarkRecv/impl=xdpnet/size=64", Procs: 2, Metrics: map[string]float64{"pps": 2e6, "ns/op": 500}},
		{Name: "BenchmarkRecv/impl=xdpnet/size=64", Procs: 2, Metrics: map[string]float64{"pps": 3e6, "ns/op": 300}},
		{Name: "BenchmarkRecv/impl=xdpnet/size=64", Procs: 2, Metrics: map[string]float64{"pps": 2.5e6, "ns/op": 400}},
		{Name: "BenchmarkRecv/impl=baseline/size=64", Procs: 2, Metrics: map[string]float64{"pps": 5e5, "ns/op": 2000}},
		{Name: "BenchmarkRecv/impl=xdpnet/size=1518", Procs: 2, Metrics: map[string]float64{"pps": 1e6}},
		{Name: "BenchmarkRecv/impl=other/size=64", Procs: 2, Metrics: map[string]float64{"pps": 1e6}},
		{Name: "BenchmarkLone/impl=xdpnet", Procs: 2, Metrics: map[string]float64{"ns/op": 1}},
		{Name: "BenchmarkKernel/impl=baseline-kernel", Procs: 2, Metrics: map[string]float64{"ns/op": 10}},
		{Name: "BenchmarkKernel/impl=xdpnet", Procs: 2, Metrics: map[string]float64{"ns/op": 5, "B/op": 0}},
		{Name: "BenchmarkPool/impl=nic", Procs: 2, Metrics: map[string]float64{"ns/op": 10, "x-chanpool": 4}},
		{Name: "BenchmarkPool/impl=chanpool", Procs: 2, Metrics: map[string]float64{"ns/op": 40}},
		{Name: "BenchmarkPool/impl=syncpool", Procs: 2, Metrics: map[string]float64{"ns/op": 20}},
		{Name: "BenchmarkRx/impl=xdpnet", Procs: 2, Metrics: map[string]float64{"gen-pps": 2e6, "rx-pps": 1e6}},
		{Name: "BenchmarkRx/impl=baseline", Procs: 2, Metrics: map[string]float64{"gen-pps": 2e6, "rx-pps": 5e5}},
		{Name: "BenchmarkRx/impl=baseline-other", Procs: 2, Metrics: map[string]float64{"gen-pps": 2e6, "rx-pps": 2.5e5}},
	}
	figs := Aggregate("nic", res)
	if len(figs) != 13 {
		t.Fatalf("figures: %d", len(figs))
	}
	f := figs[0]
	if f.Runs != 3 || f.Median["pps"] != 2.5e6 || f.Min["pps"] != 2e6 || f.Max["pps"] != 3e6 {
		t.Errorf("aggregate: %+v", f)
	}
	cmps := Pair(figs)
	byImpl := map[string]Comparison{}
	for _, c := range cmps {
		byImpl[c.Impl] = c
	}
	if len(cmps) != 7 {
		t.Fatalf("comparisons: %+v", cmps)
	}
	var rx []string
	for _, c := range cmps {
		if c.Impl == "BenchmarkRx/impl=xdpnet" {
			rx = append(rx, fmt.Sprintf("%s:%s:%g", c.Baseline, c.Primary, c.Gain[c.Primary]))
		}
	}
	if want := []string{"BenchmarkRx/impl=baseline:rx-pps:2", "BenchmarkRx/impl=baseline-other:rx-pps:4"}; !slices.Equal(rx, want) {
		t.Errorf("every baseline sibling, result rate first: %v, want %v", rx, want)
	}
	var vsPools []string
	for _, c := range cmps {
		if c.Impl == "BenchmarkPool/impl=nic" {
			vsPools = append(vsPools, fmt.Sprintf("%s:%g", c.Baseline, c.Gain["ns/op"]))
		}
	}
	if want := []string{"BenchmarkPool/impl=chanpool:4", "BenchmarkPool/impl=syncpool:2"}; !slices.Equal(vsPools, want) {
		t.Errorf("package's own impl against other impls: %v, want %v", vsPools, want)
	}
	c := byImpl["BenchmarkRecv/impl=xdpnet/size=64"]
	if c.Baseline != "BenchmarkRecv/impl=baseline/size=64" || c.Primary != "pps" {
		t.Errorf("pairing: %+v", c)
	}
	if math.Abs(c.Gain["pps"]-5) > 1e-9 || math.Abs(c.Gain["ns/op"]-5) > 1e-9 {
		t.Errorf("gains: %v (want pps ×5 and ns/op ×5)", c.Gain)
	}
	if _, ok := byImpl["BenchmarkRecv/impl=other/size=64"]; !ok {
		t.Error("second implementation not paired with the same baseline")
	}
	k := byImpl["BenchmarkKernel/impl=xdpnet"]
	if k.Baseline != "BenchmarkKernel/impl=baseline-kernel" || k.Gain["ns/op"] != 2 || k.Primary != "ns/op" {
		t.Errorf("baseline- prefix: %+v", k)
	}
	if _, ok := k.Gain["B/op"]; ok {
		t.Error("gain computed for a unit the baseline lacks")
	}
}

func TestUnitDirection(t *testing.T) {
	for u, want := range map[string]Direction{
		"pps": Higher, "Gbit/s": Higher, "MB/s": Higher, "conns/s": Higher, "ratio": Higher, "reuse-ratio": Higher,
		"x-chanpool": Higher, "mux-cpu-ratio": Higher, "echoed-%": Higher, "reuse-%": Higher, "cold-reuse-%": Higher,
		"ns/op": Lower, "cpu-ns/op": Lower, "B/op": Lower, "allocs/op": Lower, "p99-ns": Lower, "p50-ms": Lower,
		"loss": Lower, "drop-veth-%": Lower, "lost/sent": Lower, "client-retransmits": Lower, "engine-cores": Lower,
		"cpu-us/req": Lower, "engine-cpu-s/GB": Lower, "cpu-vs-baseline": Lower,
		"pkts/wait": Unknown, "kicks/pkt": Unknown, "takeover-%": Unknown, "req/conn": Unknown,
	} {
		if got := UnitDirection(u); got != want {
			t.Errorf("UnitDirection(%q) = %v, want %v", u, got, want)
		}
	}
}
