package benchsuite

import (
	"fmt"
	"image/color"
	"maps"
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

// line is one curve of a figure; baselines are drawn dashed.
type line struct {
	name     string
	baseline bool
	pts      plotter.XYs
}

type figureSpec struct {
	title, x, y string
	logX        bool
	// xAtData puts the X ticks at the measured points (frame sizes).
	xAtData bool
	lines   []line
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
	p.Legend.Top = true
	p.Legend.Left = false
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
	for i, l := range s.lines {
		if len(l.pts) == 0 {
			continue
		}
		ln, pts, err := plotter.NewLinePoints(l.pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", l.name, err)
		}
		c := plotutil.Color(i)
		ln.Color, pts.Color = c, c
		ln.Width = vg.Points(1.5)
		pts.Shape = plotutil.Shape(i)
		if l.baseline {
			ln.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			ln.Color = withAlpha(c, 0xb0)
		}
		p.Add(ln, pts)
		name := l.name
		if l.baseline {
			name += " (baseline)"
		}
		p.Legend.Add(name, ln, pts)
	}
	// Room above the curves for the legend, and rates start at zero so
	// the eye reads ratios right.
	if p.Y.Min > 0 && !s.logX {
		p.Y.Min = 0
	}
	p.Y.Max += 0.25 * (p.Y.Max - p.Y.Min)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("plot directory: %w", err)
	}
	return p.Save(18*vg.Centimeter, 11*vg.Centimeter, path)
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	return color.NRGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(b >> 8), A: a}
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
//   - RFC 2544 latency CDFs at the throughput rate;
//   - each time series (reuse ratio over time), baselines dashed.
func (r *Report) Plot(dir string) error {
	var errs []string
	add := func(name string, s figureSpec) {
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
	if s, ok := r.rfcLatencyFigure(); ok {
		add("rfc2544-latency-cdf", s)
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
	for _, run := range r.RFC2544 {
		var found, src plotter.XYs
		for _, res := range run.Results {
			found = append(found, plotter.XY{X: float64(res.FrameSize), Y: res.Rate / 1e6})
			if res.SourceMax > 0 {
				src = append(src, plotter.XY{X: float64(res.FrameSize), Y: res.SourceMax / 1e6})
			}
		}
		s.lines = append(s.lines, line{name: run.DUT, baseline: run.Baseline, pts: found})
		if !run.Baseline && len(src) > 0 {
			s.lines = append(s.lines, line{name: "source max for " + run.DUT, baseline: true, pts: src})
		}
	}
	return s, len(s.lines) > 0
}

func (r *Report) rfcLatencyFigure() (figureSpec, bool) {
	s := figureSpec{title: "Latency CDF at the RFC 2544 throughput rate", x: "latency (µs)", y: "fraction of probes", logX: true}
	for _, run := range r.RFC2544 {
		for _, res := range run.Results {
			if len(res.Latency.CDF) == 0 {
				continue
			}
			pts := make(plotter.XYs, len(res.Latency.CDF))
			for i, us := range res.Latency.CDF {
				pts[i] = plotter.XY{X: max(us, 0.01), Y: float64(i+1) / float64(len(res.Latency.CDF))}
			}
			s.lines = append(s.lines, line{name: fmt.Sprintf("%s %dB", run.DUT, res.FrameSize), baseline: run.Baseline, pts: pts})
		}
	}
	return s, len(s.lines) > 0
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
		s.lines = append(s.lines, line{name: se.Name, baseline: se.Baseline, pts: pts})
		out[name] = s
	}
	return out
}
