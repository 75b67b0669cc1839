package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"time"
)

// Config is one suite run.
type Config struct {
	Run RunConfig
	// RFC2544 enables the throughput searches (they need root and the
	// veth lab; without root they are recorded as skipped).
	RFC2544 bool
	// DUTs are the devices under test the searches run against (default:
	// LabDUTs()).
	DUTs []DUT
	// FrameSizes default to RFC2544FrameSizes.
	FrameSizes []int
	// Trial is the duration of an RFC 2544 search trial, Confirm that of
	// the trial that confirms each rate found (SearchConfig).
	Trial         time.Duration
	Confirm       time.Duration
	LossTolerance float64
	// Log receives a line per RFC 2544 trial (nil: dropped).
	Log io.Writer
	// Reuse enables the reuse-ratio-over-time series (root: engine lab).
	Reuse       bool
	ReuseConfig ReuseConfig
}

// DUT is a device under test of the RFC 2544 search. Open builds it (a lab,
// a port, an engine) and returns the Offerer and a function that tears it
// all down.
type DUT struct {
	Name string
	// Baseline marks the same-run reference other DUTs are read against.
	Baseline bool
	// NeedsRoot says Open builds a lab: without root the search is
	// recorded as skipped.
	NeedsRoot bool
	// Conditions recorded beside the figures: mode, queues, ring sizes.
	Conditions map[string]string
	Open       func(ctx context.Context) (Offerer, func() error, error)
}

// labBenchTimes are the full-mode counts of the benchmarks that build a lab
// for every b.N round (the counts bench/<package>.md documents).
var labBenchTimes = map[string]string{
	"BenchmarkProxy":              "4000x",
	"BenchmarkLabQUICStreams":     "10000x",
	"BenchmarkLabQUICHandshakes":  "2000x",
	"BenchmarkLabQUICBulk":        "2000x",
	"BenchmarkLabQUICBulkPeerGRO": "2000x",
	"BenchmarkIdleConnMemory":     "1x",
}

// labTimeouts are the full-mode bounds of the benchmarks that need more
// than Timeout's default: BenchmarkIdleConnMemory holds 10,000 connections
// of 8 kinds and 2 peers, about a minute per run on a quiet machine.
var labTimeouts = map[string]time.Duration{
	"BenchmarkIdleConnMemory": 15 * time.Minute,
}

// WithDefaults fills in the short or full defaults.
func (c Config) WithDefaults() Config {
	short := c.Run.Short
	if c.Run.BenchTime == "" {
		c.Run.BenchTime = "1s"
		if short {
			c.Run.BenchTime = "100ms"
		}
	}
	if c.Run.BenchTimeFor == nil && !short {
		c.Run.BenchTimeFor = labBenchTimes
	}
	if c.Run.TimeoutFor == nil && !short {
		c.Run.TimeoutFor = labTimeouts
	}
	if c.Run.Count <= 0 {
		c.Run.Count = 3
		if short {
			c.Run.Count = 1
		}
	}
	if c.Run.Timeout <= 0 {
		c.Run.Timeout = 5 * time.Minute
		if short {
			c.Run.Timeout = 2 * time.Minute
		}
	}
	if c.Trial <= 0 {
		c.Trial = time.Second
		if short {
			c.Trial = 100 * time.Millisecond
		}
	}
	// RFC 2544's 60 s for every trial would take hours on the lab's two
	// cores; 10 s per rate found is what a full run affords (about 5
	// minutes more for the five devices and seven sizes, a step-down adds
	// 10 s).
	if c.Confirm <= 0 {
		c.Confirm = 10 * time.Second
		if short {
			c.Confirm = time.Second
		}
	}
	if len(c.FrameSizes) == 0 {
		c.FrameSizes = RFC2544FrameSizes
		if short {
			c.FrameSizes = []int{64, 1518}
		}
	}
	if c.DUTs == nil {
		c.DUTs = LabDUTs()
	}
	c.Run = c.Run.withDefaults()
	return c
}

// Run runs the whole suite: every benchmark, then the RFC 2544 searches.
// The report holds whatever was measured, also when Run returns an error
// (an interrupt, the deadline).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.WithDefaults()
	rep := &Report{Conditions: CollectConditions(cfg.Run.Dir)}
	rep.Conditions.Short = cfg.Run.Short
	rep.Conditions.BenchTime = cfg.Run.BenchTime
	rep.Conditions.BenchTimeFor = cfg.Run.BenchTimeFor
	rep.Conditions.Count = cfg.Run.Count
	cpu0, cpuErr := ReadCPU()
	defer func() {
		rep.Conditions.End = time.Now().UTC()
		if cpu1, err := ReadCPU(); cpuErr == nil && err == nil {
			d := cpu1.Sub(cpu0)
			if d.Total > 0 {
				rep.Conditions.StealPct = 100 * d.Steal.Seconds() / d.Total.Seconds()
			}
		}
	}()

	pkgs, err := Discover(ctx, cfg.Run)
	if err != nil {
		return rep, err
	}
	if cfg.RFC2544 {
		trials := 0
		for range cfg.DUTs {
			// Upper bound on steps: the searches end early, the bar jumps.
			trials += len(cfg.FrameSizes)
		}
		cfg.Run.Progress.AddTotal(trials)
	}
	if cfg.Reuse {
		cfg.Run.Progress.AddTotal(len(reusePolicies))
	}
	runs, err := RunPackages(ctx, cfg.Run, pkgs)
	rep.AddRuns(runs)
	if err != nil {
		return rep, err
	}
	if cfg.RFC2544 {
		if err := runRFC2544(ctx, cfg, rep); err != nil {
			return rep, err
		}
	}
	if cfg.Reuse {
		runReuse(ctx, cfg, rep)
	}
	return rep, ctx.Err()
}

func runReuse(ctx context.Context, cfg Config, rep *Report) {
	rc := cfg.ReuseConfig.withDefaults(cfg.Run.Short)
	for _, p := range reusePolicies {
		label := "reuse series, policy " + p.policy
		if os.Geteuid() != 0 {
			rep.Series = append(rep.Series, Series{Name: "reuse policy " + p.policy, Baseline: p.baseline,
				Error: "skipped: needs root to build the engine lab"})
			cfg.Run.Progress.Step(label + " (skipped: not root)")
			continue
		}
		cfg.Run.Progress.Note(label)
		s, err := ReuseSeries(ctx, p.policy, rc)
		if err != nil && rc.Dataplane != "kernel" && ctx.Err() == nil {
			// The ratio is the reuse pool's: when the xdp data plane does
			// not carry the load, measure the policy on the kernel one and
			// say so.
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v; measured on the kernel data plane instead", label, err))
			kc := rc
			kc.Dataplane = "kernel"
			s, err = ReuseSeries(ctx, p.policy, kc)
		}
		s.Baseline = p.baseline
		if err != nil {
			s.Error = err.Error()
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", label, err))
		}
		rep.Series = append(rep.Series, s)
		cfg.Run.Progress.Step(label)
		if ctx.Err() != nil {
			return
		}
	}
}

func runRFC2544(ctx context.Context, cfg Config, rep *Report) error {
	sc := SearchConfig{
		FrameSizes:    cfg.FrameSizes,
		Trial:         cfg.Trial,
		Confirm:       cfg.Confirm,
		LossTolerance: cfg.LossTolerance,
	}.withDefaults()
	sc.MaxTrials, sc.Resolution = 10, 0.01
	if cfg.Run.Short {
		sc.MaxTrials, sc.Resolution = 6, 0.05
	}
	for _, d := range cfg.DUTs {
		run := RFC2544Run{DUT: d.Name, Baseline: d.Baseline, Conditions: d.Conditions,
			TrialSeconds: sc.Trial.Seconds(), ConfirmSeconds: sc.Confirm.Seconds(),
			Confirmations: sc.Confirmations, StepDown: sc.StepDown, LossTolerance: sc.LossTolerance}
		if d.NeedsRoot && os.Geteuid() != 0 {
			run.Error = "skipped: needs root to build the veth lab"
			rep.RFC2544 = append(rep.RFC2544, run)
			cfg.Run.Progress.Step("rfc2544 " + d.Name + " (skipped: not root)")
			continue
		}
		sc.Progress = func(size int, t Trial, r TrialResult, pass bool) {
			if cfg.Log != nil {
				fmt.Fprintf(cfg.Log, "rfc2544 %s size=%d rate=%.0f duration=%v probes=%v sent=%d received=%d loss=%.4f%% pass=%v\n",
					d.Name, size, t.Rate, t.Duration, t.Probes, r.Sent, r.Received, 100*r.Loss(), pass)
			}
			cfg.Run.Progress.Note(fmt.Sprintf("rfc2544 %s %dB %.0f fps", d.Name, size, t.Rate))
		}
		err := searchDUT(ctx, d, sc, &run, cfg.Run.Progress)
		if err != nil {
			run.Error = err.Error()
			rep.Errors = append(rep.Errors, fmt.Sprintf("rfc2544 %s: %v", d.Name, err))
		}
		rep.RFC2544 = append(rep.RFC2544, run)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

func searchDUT(ctx context.Context, d DUT, sc SearchConfig, run *RFC2544Run, prog *Progress) (err error) {
	o, closeFn, err := d.Open(ctx)
	if err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	defer func() {
		if cerr := closeFn(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down: %w", cerr))
		}
	}()
	if c, ok := o.(interface{ Conditions() map[string]string }); ok {
		if run.Conditions == nil {
			run.Conditions = map[string]string{}
		}
		maps.Copy(run.Conditions, c.Conditions())
	}
	sizes := sc.FrameSizes
	for _, size := range sizes {
		sc.FrameSizes = []int{size}
		res, err := Search(ctx, o, sc)
		run.Results = append(run.Results, res...)
		prog.Step(fmt.Sprintf("rfc2544 %s %dB", d.Name, size))
		if err != nil {
			return err
		}
	}
	return nil
}
