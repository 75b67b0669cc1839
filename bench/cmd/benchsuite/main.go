package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/xdpnet/xdpnet/bench/internal/benchsuite"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchsuite:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		out      = flag.String("out", "", "results file (default bench/results/<date>.json)")
		md       = flag.String("md", "BENCH.md", "Markdown file whose generated section is rewritten (empty: none)")
		plots    = flag.String("plots", "bench/plots", "directory for PNG figures (empty: none)")
		short    = flag.Bool("short", false, "short mode: -test.short, short benchtime, short RFC 2544 trials")
		bench    = flag.String("bench", ".", "regexp selecting top-level benchmarks")
		pkgs     = flag.String("pkgs", "./...", "packages to benchmark (go list pattern)")
		benchT   = flag.String("benchtime", "", "-test.benchtime (default 1s, short 100ms)")
		count    = flag.Int("count", 0, "-test.count (default 3, short 1)")
		timeout  = flag.Duration("timeout", 0, "bound for one top-level benchmark (default 5m, short 2m; full mode gives BenchmarkIdleConnMemory 15m)")
		rfc      = flag.Bool("rfc2544", true, "run the RFC 2544 throughput searches (needs root)")
		reuse    = flag.Bool("reuse", true, "run the reuse-ratio-over-time series (needs root)")
		trial    = flag.Duration("trial", 0, "RFC 2544 search trial duration (default 1s, short 100ms)")
		confirm  = flag.Duration("confirm", 0, "RFC 2544 confirmation trial duration (default 10s, short 1s)")
		tol      = flag.Float64("loss", 0, "RFC 2544 loss tolerance (fraction; RFC 2544 says 0)")
		logPath  = flag.String("log", "", "file for the raw benchmark output (default <out>.log)")
		deadline = flag.Duration("deadline", 0, "bound for the whole suite (default 2h, short 10m)")
		from     = flag.String("from", "", "redraw the plots and Markdown from this results file instead of running")
	)
	flag.Parse()
	if *from != "" {
		return redraw(*from, *md, *plots)
	}

	cfg := benchsuite.Config{
		Run: benchsuite.RunConfig{
			Packages:  []string{*pkgs},
			Short:     *short,
			BenchTime: *benchT,
			Count:     *count,
			Timeout:   *timeout,
		},
		RFC2544:       *rfc,
		Reuse:         *reuse,
		Trial:         *trial,
		Confirm:       *confirm,
		LossTolerance: *tol,
	}
	if *bench != "." {
		re, err := regexp.Compile(*bench)
		if err != nil {
			return fmt.Errorf("-bench: %w", err)
		}
		cfg.Run.Match = re
	}
	cfg = cfg.WithDefaults()
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	cfg.Run.Dir = dir
	if *out == "" {
		*out = filepath.Join("bench", "results", time.Now().UTC().Format("2006-01-02")+".json")
	}
	if *logPath == "" {
		*logPath = *out + ".log"
	}
	if *deadline == 0 {
		*deadline = 2 * time.Hour
		if *short {
			*deadline = 10 * time.Minute
		}
	}
	if err := os.MkdirAll(filepath.Dir(*logPath), 0o755); err != nil {
		return err
	}
	logf, err := os.Create(*logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cfg.Run.Log = logf
	cfg.Run.Progress = benchsuite.NewProgress(os.Stderr)
	cfg.Log = io.MultiWriter(logf)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *deadline)
	defer cancel()

	rep, runErr := benchsuite.Run(ctx, cfg)
	cfg.Run.Progress.Finish()
	// Whatever was measured is written, also after an error or interrupt.
	if *plots != "" {
		if err := rep.Plot(*plots); err != nil {
			rep.Errors = append(rep.Errors, err.Error())
		}
	}
	if err := rep.WriteJSON(*out); err != nil {
		return err
	}
	if *md != "" {
		if err := rep.SpliceFile(*md, *plots); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "benchsuite: %d figures, %d comparisons, %d RFC 2544 runs, %d plots, %d errors; results in %s, raw output in %s\n",
		len(rep.Figures), len(rep.Comparisons), len(rep.RFC2544), len(rep.Plots), len(rep.Errors), *out, *logPath)
	return runErr
}

// redraw regenerates the plots and the Markdown section of a past run.
func redraw(path, md, plots string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep benchsuite.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	rep.Plots = nil
	if plots != "" {
		if err := rep.Plot(plots); err != nil {
			return err
		}
	}
	if md != "" {
		return rep.SpliceFile(md, plots)
	}
	return nil
}
