package benchsuite

import (
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// line is one curve of a figure: measured figures solid, baselines
// dashed, references (the source's maximum) dotted without markers.
type line struct {
	name      string
	baseline  bool
	reference bool
	// color indexes plotutil's palette; a reference shares its DUT's.
	color int
	pts   plotter.XYs
}

type figureSpec struct {
	title, x, y string
	logX        bool
	// xAtData puts the X ticks at the measured points (frame sizes).
	xAtData bool
	// cdf: Y is a fraction in [0, 1], curves have many points (no
	// markers), and the legend goes bottom right.
	cdf   bool
	lines []line
}

// humanTicks labels the default ticks with k/M/G instead of exponents.
type humanTicks struct{}

func (humanTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = fmtNum(ts[i].Value)
		}
	}
	return ts
}

func dataTicks(xs []float64) plot.ConstantTicks {
	slices.Sort(xs)
	xs = slices.Compact(xs)
	ts := make(plot.ConstantTicks, len(xs))
	for i, x := range xs {
		ts[i] = plot.Tick{Value: x, Label: fmtNum(x)}
	}
	return ts
}

func (s figureSpec) save(path string) error {
	p := plot.New()
	p.Title.Text = s.title
	p.X.Label.Text = s.x
	p.Y.Label.Text = s.y
	p.Legend.Top = !s.cdf
	p.Legend.Left = false
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())
	p.Y.Tick.Marker = humanTicks{}
	var xs []float64
	for _, l := range s.lines {
		for _, pt := range l.pts {
			xs = append(xs, pt.X)
		}
	}
	if s.logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	if s.xAtData {
		p.X.Tick.Marker = dataTicks(xs)
	}
	entries := 0
	for _, l := range s.lines {
		if len(l.pts) == 0 {
			continue
		}
		entries++
		c := plotutil.Color(l.color)
		ln, err := plotter.NewLine(l.pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", l.name, err)
		}
		ln.Color = c
		ln.Width = vg.Points(1.5)
		thumbs := []plot.Thumbnailer{ln}
		switch {
		case l.reference:
			ln.Width = vg.Points(1)
			ln.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
		case l.baseline:
			ln.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		}
		p.Add(ln)
		if !s.cdf && !l.reference {
			pts, err := plotter.NewScatter(l.pts)
			if err != nil {
				return fmt.Errorf("plot %s: %w", l.name, err)
			}
			pts.Color = c
			pts.Shape = plotutil.Shape(l.color)
			p.Add(pts)
			thumbs = append(thumbs, pts)
		}
		name := l.name
		if l.baseline {
			name += " (baseline)"
		}
		p.Legend.Add(name, thumbs...)
	}
	if s.cdf {
		p.Y.Min, p.Y.Max = 0, 1
	} else {
		// Rates start at zero so the eye reads ratios right; room above
		// the curves for the legend.
		if p.Y.Min > 0 {
			p.Y.Min = 0
		}
		p.Y.Max += float64(entries) * 0.07 * (p.Y.Max - p.Y.Min)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("plot directory: %w", err)
	}
	return p.Save(20*vg.Centimeter, 13*vg.Centimeter, path)
}

// finite reports whether every point can be drawn: gonum's tick search
// never ends on an axis whose range is NaN (a figure whose runs were all
// skipped or failed).
func finite(pts plotter.XYs) bool {
	for _, p := range pts {
		if math.IsNaN(p.X) || math.IsInf(p.X, 0) || math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
			return false
		}
	}
	return len(pts) > 0
}

// sweepParams are sub-benchmark parameters worth a curve, in preference
// order: frame size first (throughput against frame size), then time
// (ratios over time), then load.
var sweepParams = []string{"size", "frame", "framesize", "t", "time", "sec", "conns", "streams", "clients", "batch", "queues"}

// Plot draws every figure the report supports into dir and records their
// paths in r.Plots:
//   - for each benchmark sweeping a numeric parameter (size=, t=, ...): its
//     primary metric against it, one curve per implementation, baselines
//     dashed;
//   - RFC 2544 throughput against frame size, with the source's maximum;
//   - RFC 2544 latency CDFs at the throughput rate, one figure per frame
//     size;
//   - each time series (reuse ratio over time), baselines dashed.
func (r *Report) Plot(dir string) error {
	var errs []string
	add := func(name string, s figureSpec) {
		s.lines = slices.DeleteFunc(s.lines, func(l line) bool { return !finite(l.pts) })
		if len(s.lines) == 0 {
			return
		}
		path := filepath.Join(dir, name+".png")
		if err := s.save(path); err != nil {
			errs = append(errs, err.Error())
			return
		}
		r.Plots = append(r.Plots, path)
	}
	for name, s := range r.sweepFigures() {
		add(name, s)
	}
	if s, ok := r.rfcThroughputFigure(); ok {
		add("rfc2544-throughput", s)
	}
	for name, s := range r.rfcLatencyFigures() {
		add(name, s)
	}
	for name, s := range r.seriesFigures() {
		add(name, s)
	}
	sort.Strings(r.Plots)
	if len(errs) > 0 {
		return fmt.Errorf("plots: %s", strings.Join(errs, "; "))
	}
	return nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func (r *Report) sweepFigures() map[string]figureSpec {
	out := map[string]figureSpec{}
	// Group figures by package and top-level benchmark.
	type key struct{ pkg, top string }
	groups := map[key][]Figure{}
	for _, f := range r.Figures {
		top, _, _ := strings.Cut(f.Name, "/")
		groups[key{f.Package, top}] = append(groups[key{f.Package, top}], f)
	}
	primary := map[string]string{}
	for _, c := range r.Comparisons {
		primary[c.Package+"\x00"+c.Impl] = c.Primary
		primary[c.Package+"\x00"+c.Baseline] = c.Primary
	}
	for k, figs := range groups {
		param := sweepParam(figs)
		if param == "" {
			continue
		}
		unit := ""
		for _, f := range figs {
			if u := primary[f.Package+"\x00"+f.Name]; u != "" {
				unit = u
				break
			}
		}
		if unit == "" {
			unit = primaryUnit(figs[0].Median)
		}
		if unit == "" {
			continue
		}
		// One curve per combination of the other parameters.
		curves := map[string]*line{}
		for _, f := range figs {
			x, err := strconv.ParseFloat(strings.TrimRight(f.Params[param], "sB"), 64)
			v, ok := f.Median[unit]
			if err != nil || !ok {
				continue
			}
			rest := map[string]string{}
			for pk, pv := range f.Params {
				if pk != param {
					rest[pk] = pv
				}
			}
			name := "impl=" + f.Params["impl"]
			if f.Params["impl"] == "" {
				name = ""
			}
			if o := paramString(rest); o != "–" {
				name = strings.TrimSpace(name + " " + o)
			}
			if name == "" {
				name = k.top
			}
			l := curves[name]
			if l == nil {
				l = &line{name: name, baseline: f.IsBaseline()}
				curves[name] = l
			}
			l.pts = append(l.pts, plotter.XY{X: x, Y: v})
		}
		var lines []line
		for _, n := range slices.Sorted(maps.Keys(curves)) {
			l := curves[n]
			sort.Slice(l.pts, func(i, j int) bool { return l.pts[i].X < l.pts[j].X })
			if len(l.pts) > 1 {
				l.color = len(lines)
				lines = append(lines, *l)
			}
		}
		if len(lines) == 0 {
			continue
		}
		name := unsafeName.ReplaceAllString(shortPkg(k.pkg)+"-"+k.top+"-by-"+param, "_")
		out[name] = figureSpec{
			title: fmt.Sprintf("%s %s: %s against %s", shortPkg(k.pkg), k.top, unit, param),
			x:     param, y: unit,
			logX:    param == "size" || param == "frame" || param == "framesize",
			xAtData: param == "size" || param == "frame" || param == "framesize",
			lines:   lines,
		}
	}
	return out
}

// sweepParam returns the first sweep parameter that takes at least two
// numeric values among figs.
func sweepParam(figs []Figure) string {
	for _, p := range sweepParams {
		vals := map[string]bool{}
		for _, f := range figs {
			if v, ok := f.Params[p]; ok {
				if _, err := strconv.ParseFloat(strings.TrimRight(v, "sB"), 64); err == nil {
					vals[v] = true
				}
			}
		}
		if len(vals) >= 2 {
			return p
		}
	}
	return ""
}

func (r *Report) rfcThroughputFigure() (figureSpec, bool) {
	s := figureSpec{title: "RFC 2544 zero-loss throughput against frame size", x: "frame size (bytes)", y: "Mframes/s", logX: true, xAtData: true}
	for i, run := range r.RFC2544 {
		var found, src plotter.XYs
		for _, res := range run.Results {
			found = append(found, plotter.XY{X: float64(res.FrameSize), Y: res.Rate / 1e6})
			if res.SourceMax > 0 {
				src = append(src, plotter.XY{X: float64(res.FrameSize), Y: res.SourceMax / 1e6})
			}
		}
		s.lines = append(s.lines, line{name: run.DUT, baseline: run.Baseline, color: i, pts: found})
		if len(src) > 0 {
			s.lines = append(s.lines, line{name: "  source max, " + run.DUT, reference: true, color: i, pts: src})
		}
	}
	return s, len(s.lines) > 0
}

// rfcLatencyFigures draws one CDF figure per frame size, a curve per DUT,
// so each device reads beside its baseline at the same size.
func (r *Report) rfcLatencyFigures() map[string]figureSpec {
	out := map[string]figureSpec{}
	for i, run := range r.RFC2544 {
		for _, res := range run.Results {
			if len(res.Latency.CDF) == 0 {
				continue
			}
			name := fmt.Sprintf("rfc2544-latency-cdf-%dB", res.FrameSize)
			s, ok := out[name]
			if !ok {
				s = figureSpec{title: fmt.Sprintf("Latency CDF at the RFC 2544 throughput rate, %d-byte frames", res.FrameSize),
					x: "one-way latency (µs)", y: "fraction of probes", logX: true, cdf: true}
			}
			pts := make(plotter.XYs, len(res.Latency.CDF))
			for j, us := range res.Latency.CDF {
				pts[j] = plotter.XY{X: max(us, 0.01), Y: float64(j+1) / float64(len(res.Latency.CDF))}
			}
			s.lines = append(s.lines, line{name: run.DUT, baseline: run.Baseline, color: i, pts: pts})
			out[name] = s
		}
	}
	return out
}

func (r *Report) seriesFigures() map[string]figureSpec {
	out := map[string]figureSpec{}
	for _, se := range r.Series {
		name := unsafeName.ReplaceAllString("series-"+se.Unit, "_")
		s, ok := out[name]
		if !ok {
			s = figureSpec{title: se.Unit + " over time", x: "time (s)", y: se.Unit}
		}
		pts := make(plotter.XYs, len(se.Points))
		for i, p := range se.Points {
			pts[i] = plotter.XY{X: p[0], Y: p[1]}
		}
		s.lines = append(s.lines, line{name: se.Name, baseline: se.Baseline, color: len(s.lines), pts: pts})
		out[name] = s
	}
	return out
}
