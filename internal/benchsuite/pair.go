package benchsuite

import (
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

// HigherIsBetter reports whether a larger value of unit is an improvement:
// rates (pps, Gbit/s, anything per second), ratios and hit rates. Costs
// (ns/op, B/op, allocs/op, cpu-ns/op, latencies) are better when smaller.
func HigherIsBetter(unit string) bool {
	u := strings.ToLower(unit)
	switch {
	case strings.HasSuffix(u, "/op"), strings.HasSuffix(u, "-ns"), strings.HasSuffix(u, "ns"),
		strings.Contains(u, "lat"), strings.Contains(u, "loss"), strings.Contains(u, "drop"):
		return false
	case strings.HasSuffix(u, "/s"), strings.HasSuffix(u, "pps"), strings.HasSuffix(u, "bps"),
		strings.Contains(u, "ratio"), strings.Contains(u, "hit"), strings.Contains(u, "reuse"):
		return true
	}
	return false
}

// Comparison is one implementation's figures beside its baseline sibling.
type Comparison struct {
	Package  string `json:"package"`
	Impl     string `json:"impl"`     // full name of the impl= sub-benchmark
	Baseline string `json:"baseline"` // full name of its baseline sibling
	// Gain maps every unit both report to how many times better the
	// implementation is than the baseline (>1 better, <1 worse), taking
	// HigherIsBetter into account.
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

// Pair matches every impl=X figure with the impl=baseline sibling that
// differs from it only in the impl= segment. Figures without an impl=
// segment, and implementations without a baseline sibling, are left out
// (the report lists them unpaired).
func Pair(figs []Figure) []Comparison {
	base := map[string]Figure{}
	for _, f := range figs {
		if f.IsBaseline() {
			k := f.Package + "\x00" + siblingKey(f.Name)
			if _, dup := base[k]; !dup {
				base[k] = f
			}
		}
	}
	var out []Comparison
	for _, f := range figs {
		impl, ok := f.Params["impl"]
		if !ok || isBaseline(impl) {
			continue
		}
		b, ok := base[f.Package+"\x00"+siblingKey(f.Name)]
		if !ok {
			continue
		}
		c := Comparison{Package: f.Package, Impl: f.Name, Baseline: b.Name, Gain: map[string]float64{}}
		for u, v := range f.Median {
			bv, ok := b.Median[u]
			if !ok || v == 0 || bv == 0 {
				continue
			}
			if HigherIsBetter(u) {
				c.Gain[u] = v / bv
			} else {
				c.Gain[u] = bv / v
			}
		}
		c.Primary = primaryUnit(c.Gain)
		out = append(out, c)
	}
	return out
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
		// Rates first: they are what the benchmarks exist to show.
		sort.Slice(custom, func(i, j int) bool {
			hi, hj := HigherIsBetter(custom[i]), HigherIsBetter(custom[j])
			if hi != hj {
				return hi
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
