package benchsuite

import (
	"bytes"
	"fmt"
	"maps"
	"strings"
)

// Target is a goal an issue set for a figure. The table of targets is
// read from the run it is printed with, never from a better run: a goal
// the run missed reads "not met".
type Target struct {
	Issue  string // "#2 bufring"
	Figure string // what is measured, in words
	Goal   string // the goal, in words
	Checks []Check
}

// Bound says which side of Check.Bound passes.
type Bound int

const (
	AtLeast Bound = iota // the figure or gain must be >= Bound
	AtMost               // the figure or gain must be <= Bound
)

// Check is one condition of a target on the figures of one benchmark.
type Check struct {
	Package string // short package path: "nic"
	Bench   string // top-level benchmark: "BenchmarkRxRecycle"
	// Impl is the impl= of the figure read ("" for a benchmark without
	// implementations).
	Impl string
	// Baseline, when set, is the impl= of the same-run sibling the gain is
	// taken against; when empty the figure's own value is bounded.
	Baseline string
	// Params the figure must have besides impl= (nil: any); figures that
	// differ in other parameters are checked one by one.
	Params map[string]string
	Unit   string
	Side   Bound
	Bound  float64
}

// issueTargets are the goals the issues set, as figures of the suite.
var issueTargets = []Target{
	{Issue: "#2 bufring", Figure: "local cache Get+Put", Goal: "≤ sync.Pool, 0 allocs", Checks: []Check{
		{Package: "bufring", Bench: "BenchmarkCachePair", Impl: "bufring", Baseline: "syncpool", Unit: "ns/op", Side: AtLeast, Bound: 1},
		{Package: "bufring", Bench: "BenchmarkCachePair", Impl: "bufring", Unit: "allocs/op", Side: AtMost, Bound: 0},
	}},
	{Issue: "#2 bufring", Figure: "shared ring, 2 goroutines, batches", Goal: "≥ 3× channel pool", Checks: []Check{
		{Package: "bufring", Bench: "BenchmarkSharedRingContended", Impl: "bufring", Baseline: "chanpool", Unit: "frames/s", Side: AtLeast, Bound: 3},
	}},
	{Issue: "#3 packet I/O", Figure: "receive-and-recycle, 64 B, CPU per packet", Goal: "≤ asavie/xdp loop", Checks: []Check{
		{Package: "nic", Bench: "BenchmarkRxRecycle", Impl: "xdpnet", Baseline: "baseline", Unit: "cpu-ns/pkt", Side: AtLeast, Bound: 1},
	}},
	{Issue: "#3 packet I/O", Figure: "receive-and-recycle, allocations per packet", Goal: "0", Checks: []Check{
		{Package: "nic", Bench: "BenchmarkRxRecycle", Impl: "xdpnet", Unit: "allocs/op", Side: AtMost, Bound: 0},
	}},
	{Issue: "#3 packet I/O", Figure: "receive-and-recycle, drops inside the port at the generator's full rate (fill ring empty, RX ring full, other)", Goal: "none", Checks: []Check{
		{Package: "nic", Bench: "BenchmarkRxRecycle", Impl: "xdpnet", Unit: "drop-fill-empty-%", Side: AtMost, Bound: 0},
		{Package: "nic", Bench: "BenchmarkRxRecycle", Impl: "xdpnet", Unit: "drop-rx-full-%", Side: AtMost, Bound: 0},
		{Package: "nic", Bench: "BenchmarkRxRecycle", Impl: "xdpnet", Unit: "drop-other-%", Side: AtMost, Bound: 0},
	}},
	{Issue: "#4 stack", Figure: "TCP bulk vs gVisor `link/xdp`", Goal: "≥ 3×", Checks: []Check{
		{Package: "stack", Bench: "BenchmarkTCPBulk", Impl: "xdpnet", Baseline: "gvisor-xdp", Unit: "Gbit/s", Side: AtLeast, Bound: 3},
	}},
	{Issue: "#4 stack", Figure: "TCP connection rate vs gVisor `link/xdp`", Goal: "≥ 1.3×", Checks: []Check{
		{Package: "stack", Bench: "BenchmarkTCPConnRate", Impl: "xdpnet", Baseline: "gvisor-xdp", Unit: "conn/s", Side: AtLeast, Bound: 1.3},
	}},
	{Issue: "#5 mux", Figure: "streams/s vs quic-go on kernel UDP (AF_XDP lab path)", Goal: "≥ 0.9×", Checks: []Check{
		{Package: "mux", Bench: "BenchmarkLabQUICStreams", Impl: "xdpnet", Baseline: "baseline", Unit: "streams/s", Side: AtLeast, Bound: 0.9},
	}},
	{Issue: "#5 mux", Figure: "handshakes/s vs quic-go on kernel UDP (AF_XDP lab path)", Goal: "≥ 0.9×", Checks: []Check{
		{Package: "mux", Bench: "BenchmarkLabQUICHandshakes", Impl: "xdpnet", Baseline: "baseline", Unit: "handshakes/s", Side: AtLeast, Bound: 0.9},
	}},
	{Issue: "#5 mux", Figure: "bulk vs quic-go on kernel UDP (AF_XDP lab path)", Goal: "≥ 0.8×", Checks: []Check{
		{Package: "mux", Bench: "BenchmarkLabQUICBulk", Impl: "xdpnet", Baseline: "baseline", Unit: "Gbit/s", Side: AtLeast, Bound: 0.8},
	}},
	{Issue: "#6 reuse", Figure: "attach+detach on a hit: `Attach(*Params)`, `AttachKey`", Goal: "≤ 200 ns CPU, 0 allocs", Checks: []Check{
		{Package: "reuse", Bench: "BenchmarkAttachDetachHit", Impl: "xdpnet", Unit: "cpu-ns/op", Side: AtMost, Bound: 200},
		{Package: "reuse", Bench: "BenchmarkAttachDetachHit", Impl: "xdpnet", Unit: "allocs/op", Side: AtMost, Bound: 0},
		{Package: "reuse", Bench: "BenchmarkAttachDetachHit", Impl: "xdpnet-key", Unit: "cpu-ns/op", Side: AtMost, Bound: 200},
		{Package: "reuse", Bench: "BenchmarkAttachDetachHit", Impl: "xdpnet-key", Unit: "allocs/op", Side: AtMost, Bound: 0},
	}},
	{Issue: "#6 reuse", Figure: "reuse ratio, 4 workers × 200 servers, by policy", Goal: "≥ 99.5%", Checks: []Check{
		{Package: "reuse", Bench: "BenchmarkReuseRatio", Unit: "reuse-%", Side: AtLeast, Bound: 99.5},
	}},
	{Issue: "#7 engine", Figure: "backend reuse at steady load", Goal: "≥ 99.5%", Checks: []Check{
		{Package: "engine", Bench: "BenchmarkProxy", Impl: "xdpnet", Unit: "reuse-%", Side: AtLeast, Bound: 99.5},
	}},
	{Issue: "#7 engine", Figure: "requests/s vs the same proxy on the kernel stack", Goal: "≥ 1×", Checks: []Check{
		{Package: "engine", Bench: "BenchmarkProxy", Impl: "xdpnet", Baseline: "baseline", Unit: "req/s", Side: AtLeast, Bound: 1},
	}},
}

// CheckResult is one check read from one figure.
type CheckResult struct {
	Label    string // the figure's other parameters and impl, for the table
	Measured string
	Met      bool
}

// Evaluate reads the check from figs: one outcome per matching figure,
// none when the run did not measure it.
func (c Check) Evaluate(figs []Figure) []CheckResult {
	var out []CheckResult
	for _, f := range figs {
		if !c.matches(f) {
			continue
		}
		v, ok := f.Median[c.Unit]
		if !ok {
			continue
		}
		o := CheckResult{Label: c.label(f)}
		if c.Baseline == "" {
			o.Measured = fmtNum(v) + " " + c.Unit
			o.Met = c.passes(v)
			out = append(out, o)
			continue
		}
		b, ok := c.baseline(f, figs)
		if !ok {
			continue
		}
		g, ok := compare(f, b).Gain[c.Unit]
		if !ok {
			continue
		}
		o.Measured = fmt.Sprintf("×%s (%s vs %s %s %s)", fmtNum(g), fmtNum(v), c.Baseline, fmtNum(b.Median[c.Unit]), c.Unit)
		o.Met = c.passes(g)
		out = append(out, o)
	}
	return out
}

func (c Check) passes(v float64) bool {
	if c.Side == AtMost {
		return v <= c.Bound
	}
	return v >= c.Bound
}

func (c Check) matches(f Figure) bool {
	top, _, _ := strings.Cut(f.Name, "/")
	if shortPkg(f.Package) != c.Package || top != c.Bench || f.Params["impl"] != c.Impl {
		return false
	}
	for k, v := range c.Params {
		if f.Params[k] != v {
			return false
		}
	}
	return true
}

// baseline finds f's same-run sibling with impl=c.Baseline.
func (c Check) baseline(f Figure, figs []Figure) (Figure, bool) {
	key := siblingKey(f.Name)
	for _, b := range figs {
		if b.Package == f.Package && b.Params["impl"] == c.Baseline && siblingKey(b.Name) == key {
			return b, true
		}
	}
	return Figure{}, false
}

// label names the figure among those the check matches: its impl and the
// parameters the check leaves open.
func (c Check) label(f Figure) string {
	p := maps.Clone(f.Params)
	for k := range c.Params {
		delete(p, k)
	}
	var parts []string
	if c.Impl != "" {
		parts = append(parts, "impl="+c.Impl)
	}
	if s := paramString(p); s != "–" {
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// targetsMarkdown renders the targets as the run measured them; nothing
// when the run measured none of them (a -bench subset, the fixture).
func targetsMarkdown(b *bytes.Buffer, targets []Target, figs []Figure) {
	type row struct {
		t Target
		// measured holds the figures read by label, labels their order.
		labels, missed []string
		measured       map[string][]string
		checked        int
	}
	var rows []row
	measuredAny := false
	for _, t := range targets {
		r := row{t: t, measured: map[string][]string{}}
		for _, c := range t.Checks {
			for _, o := range c.Evaluate(figs) {
				if _, ok := r.measured[o.Label]; !ok {
					r.labels = append(r.labels, o.Label)
				}
				r.measured[o.Label] = append(r.measured[o.Label], o.Measured)
				r.checked++
				if !o.Met {
					r.missed = append(r.missed, strings.TrimSpace(o.Label+" "+c.Unit))
				}
			}
		}
		measuredAny = measuredAny || r.checked > 0
		rows = append(rows, r)
	}
	if !measuredAny {
		return
	}
	b.WriteString("### Targets from the issues, as this run measured them\n\n")
	b.WriteString("| issue | figure | target | measured in this run | |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		var measured []string
		for _, l := range r.labels {
			m := strings.Join(r.measured[l], ", ")
			if l != "" {
				m = l + ": " + m
			}
			measured = append(measured, m)
		}
		verdict := "met"
		switch {
		case r.checked == 0:
			verdict = "not measured in this run"
		case len(r.missed) == r.checked:
			verdict = "not met"
		case len(r.missed) > 0:
			verdict = "not met: " + strings.Join(r.missed, ", ")
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", mdEscape(r.t.Issue), mdEscape(r.t.Figure), mdEscape(r.t.Goal),
			mdEscape(strings.Join(measured, "; ")), mdEscape(verdict))
	}
	b.WriteString("\nMedians of this run's repetitions; gains against the baseline measured beside them " +
		"(Gain in the next table). Per-package method and A/B rounds: `bench/<package>.md`.\n\n")
}
