package benchsuite

import (
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// BaselineImpl is the impl= value of the sibling sub-benchmark every
// implementation is compared with. Values that start with it
// ("baseline-kernel") count as baselines too.
const BaselineImpl = "baseline"

// Figure is one benchmark's figures over all its runs (-count).
type Figure struct {
	Package string            `json:"package"`
	Name    string            `json:"name"`
	Params  map[string]string `json:"params,omitempty"`
	Procs   int               `json:"procs"`
	Runs    int               `json:"runs"`
	// Median maps each unit to the median over the runs.
	Median map[string]float64 `json:"median"`
	// Min and Max give the spread over the runs (equal when Runs is 1).
	Min map[string]float64 `json:"min"`
	Max map[string]float64 `json:"max"`
}

// IsBaseline reports whether the figure is a baseline sibling.
func (f Figure) IsBaseline() bool { return isBaseline(f.Params["impl"]) }

func isBaseline(impl string) bool { return strings.HasPrefix(impl, BaselineImpl) }

// Aggregate folds repeated results of the same benchmark (from -count) into
// one Figure each, in first-seen order.
func Aggregate(pkg string, results []Result) []Figure {
	var order []string
	byName := map[string][]Result{}
	for _, r := range results {
		if _, ok := byName[r.Name]; !ok {
			order = append(order, r.Name)
		}
		byName[r.Name] = append(byName[r.Name], r)
	}
	figs := make([]Figure, 0, len(order))
	for _, name := range order {
		rs := byName[name]
		f := Figure{
			Package: pkg, Name: name, Params: nameParams(name), Procs: rs[0].Procs, Runs: len(rs),
			Median: map[string]float64{}, Min: map[string]float64{}, Max: map[string]float64{},
		}
		units := map[string][]float64{}
		for _, r := range rs {
			for u, v := range r.Metrics {
				units[u] = append(units[u], v)
			}
		}
		for u, vs := range units {
			sort.Float64s(vs)
			f.Median[u] = median(vs)
			f.Min[u] = vs[0]
			f.Max[u] = vs[len(vs)-1]
		}
		figs = append(figs, f)
	}
	return figs
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Direction says which way a unit improves.
type Direction int

const (
	// Unknown: the unit's name does not say. Such units get no gain: a
	// guessed direction is how an echoed percentage once read as a cost.
	Unknown Direction = iota
	// Higher is better: rates, speedups, shares of frames that made it.
	Higher
	// Lower is better: costs, durations, shares of frames lost.
	Lower
)

var (
	// badOutcome names what a benchmark counts against itself.
	badOutcome = regexp.MustCompile(`drop|loss|lost|fail|retrans|error`)
	// goodOutcome names shares and counts of what went right.
	goodOutcome = regexp.MustCompile(`echoed|reuse|hit`)
	// duration is a time unit, alone or per something: p99-ms,
	// cpu-us/req, engine-cpu-s/GB, ns/op.
	duration = regexp.MustCompile(`(^|-)(ns|us|µs|ms|s)(/|$)|latency`)
)

// UnitDirection classifies a unit by its name, the only thing the suite
// knows of it. The rules, first match wins:
//   - a bad outcome (drop, loss, lost, fail, retrans, error): lower;
//   - a speedup the benchmark computed ("x-chanpool") or a ratio (the
//     repository's benchmarks put the better side on top: impl rate over
//     baseline rate, baseline CPU over impl CPU): higher;
//   - a rate (/s, pps, bps): higher;
//   - a cost: per operation (/op), CPU or cores used, a duration: lower;
//   - a good outcome (echoed, reuse, hit): higher;
//   - anything else (pkts/wait, kicks/pkt, takeover-%): unknown.
func UnitDirection(unit string) Direction {
	u := strings.ToLower(unit)
	switch {
	case badOutcome.MatchString(u):
		return Lower
	case strings.HasPrefix(u, "x-"), strings.HasSuffix(u, "ratio"):
		return Higher
	case strings.HasSuffix(u, "/s"), strings.HasSuffix(u, "pps"), strings.HasSuffix(u, "bps"):
		return Higher
	case strings.HasSuffix(u, "/op"), strings.Contains(u, "cpu"), strings.Contains(u, "cores"), duration.MatchString(u):
		return Lower
	case goodOutcome.MatchString(u):
		return Higher
	}
	return Unknown
}

// Comparison is one implementation's figures beside its baseline sibling.
type Comparison struct {
	Package  string `json:"package"`
	Impl     string `json:"impl"`     // full name of the impl= sub-benchmark
	Baseline string `json:"baseline"` // full name of its baseline sibling
	// Gain maps every unit both report, and whose UnitDirection is known,
	// to how many times better the implementation is than the baseline
	// (>1 better, <1 worse).
	Gain map[string]float64 `json:"gain"`
	// Primary is the unit the table leads with: the first custom metric
	// both report (a rate, a ratio), else ns/op.
	Primary string `json:"primary"`
}

// siblingKey is the benchmark name with the impl= segment blanked, so an
// implementation and its baseline share it.
func siblingKey(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "impl=") {
			segs[i] = "impl=*"
		}
	}
	return strings.Join(segs, "/")
}

// Pair matches implementations with the baselines measured beside them:
// figures that differ only in the impl= segment are siblings, and
//   - every impl=X is compared with each impl=baseline (or baseline-...)
//     sibling;
//   - the project's own implementation (impl=xdpnet, or impl=<package
//     name> such as impl=bufring) is also compared with every other
//     sibling (impl=syncpool, impl=kernel, ...) when it has no
//     impl=baseline sibling.
//
// Figures without an impl= segment, or without any baseline, are left out
// (the report lists them unpaired).
func Pair(figs []Figure) []Comparison {
	groups := map[string][]Figure{}
	for _, f := range figs {
		if _, ok := f.Params["impl"]; ok {
			k := f.Package + "\x00" + siblingKey(f.Name)
			groups[k] = append(groups[k], f)
		}
	}
	var out []Comparison
	for _, f := range figs {
		impl, ok := f.Params["impl"]
		if !ok || isBaseline(impl) {
			continue
		}
		sib := groups[f.Package+"\x00"+siblingKey(f.Name)]
		var bases []Figure
		for _, b := range sib {
			if b.IsBaseline() {
				bases = append(bases, b)
			}
		}
		if len(bases) == 0 && isOwnImpl(f.Package, impl) {
			for _, b := range sib {
				if b.Name != f.Name && !isOwnImpl(b.Package, b.Params["impl"]) {
					bases = append(bases, b)
				}
			}
		}
		for _, b := range bases {
			out = append(out, compare(f, b))
		}
	}
	return out
}

// isOwnImpl reports whether impl names the project's implementation.
func isOwnImpl(pkg, impl string) bool {
	return impl == "xdpnet" || impl == path.Base(pkg)
}

func compare(f, b Figure) Comparison {
	c := Comparison{Package: f.Package, Impl: f.Name, Baseline: b.Name, Gain: map[string]float64{}}
	for u, v := range f.Median {
		bv, ok := b.Median[u]
		if !ok || v == 0 || bv == 0 {
			continue
		}
		switch UnitDirection(u) {
		case Higher:
			c.Gain[u] = v / bv
		case Lower:
			c.Gain[u] = bv / v
		}
	}
	c.Primary = primaryUnit(c.Gain)
	return c
}

func isSourceUnit(u string) bool {
	u = strings.ToLower(u)
	return strings.HasPrefix(u, "gen") || strings.Contains(u, "offered") || strings.Contains(u, "sent") || strings.HasPrefix(u, "src")
}

// standardUnits are the testing package's own; anything else came from
// b.ReportMetric and is what the benchmark's author chose to report.
var standardUnits = []string{"ns/op", "B/op", "allocs/op", "MB/s"}

func primaryUnit(gain map[string]float64) string {
	var custom []string
	for u := range gain {
		if !slices.Contains(standardUnits, u) {
			custom = append(custom, u)
		}
	}
	if len(custom) > 0 {
		// Rates first: they are what the benchmarks exist to show; the
		// source's own rate (gen-pps, offered, sent) is context, not the
		// result.
		rank := func(u string) int {
			switch {
			case isSourceUnit(u):
				return 2
			case UnitDirection(u) == Higher:
				return 0
			}
			return 1
		}
		sort.Slice(custom, func(i, j int) bool {
			ri, rj := rank(custom[i]), rank(custom[j])
			if ri != rj {
				return ri < rj
			}
			return custom[i] < custom[j]
		})
		return custom[0]
	}
	for _, u := range []string{"ns/op", "MB/s"} {
		if _, ok := gain[u]; ok {
			return u
		}
	}
	return ""
}
