package benchsuite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// RunConfig says which benchmarks to run and how long.
type RunConfig struct {
	// Dir is the module root; packages are resolved from there.
	Dir string
	// Packages are `go list` patterns (default "./...").
	Packages []string
	// Match selects top-level benchmarks by name (nil: all).
	Match *regexp.Regexp
	// Short passes -test.short: benchmarks may shrink their set-up.
	Short bool
	// BenchTime is -test.benchtime ("1s", "100x").
	BenchTime string
	// BenchTimeFor overrides BenchTime for the named top-level benchmarks.
	// A benchmark that builds a lab for every b.N round gets a fixed count,
	// so the testing package's ramp-up does not rebuild it several times
	// per run and overrun Timeout.
	BenchTimeFor map[string]string
	// Count is -test.count: repeated runs give the spread.
	Count int
	// Timeout bounds one top-level benchmark (all its sub-benchmarks and
	// runs); TimeoutFor overrides it for the named ones.
	Timeout    time.Duration
	TimeoutFor map[string]time.Duration
	// Progress, when set, counts one step per top-level benchmark.
	Progress *Progress
	// Log receives the raw output of every benchmark binary (nil: dropped).
	Log io.Writer
}

func (c RunConfig) withDefaults() RunConfig {
	if len(c.Packages) == 0 {
		c.Packages = []string{"./..."}
	}
	if c.BenchTime == "" {
		c.BenchTime = "1s"
	}
	if c.Count <= 0 {
		c.Count = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	return c
}

func (c RunConfig) timeout(benchmark string) time.Duration {
	if t, ok := c.TimeoutFor[benchmark]; ok {
		return t
	}
	return c.Timeout
}

func (c RunConfig) benchTime(benchmark string) string {
	if t, ok := c.BenchTimeFor[benchmark]; ok {
		return t
	}
	return c.BenchTime
}

// Package is a Go package with benchmarks.
type Package struct {
	ImportPath string
	Dir        string
	Benchmarks []string // top-level benchmark function names
}

// BenchRun is one run of one top-level benchmark.
type BenchRun struct {
	Package string `json:"package"`
	Name    string `json:"name"`
	// Wall is the wall-clock time of the run, in seconds.
	Wall float64 `json:"wall_s"`
	// CPU is the CPU time (user+system) of the benchmark process and the
	// children it waited for, in seconds.
	CPU float64 `json:"cpu_s"`
	// MachineCPU is the busy CPU time of the whole machine during the run
	// (includes softirq work for veth and other helpers' load), in seconds.
	MachineCPU float64   `json:"machine_cpu_s"`
	Error      string    `json:"error,omitempty"`
	Outcomes   []Outcome `json:"outcomes,omitempty"`
	Results    []Result  `json:"results"`
}

var benchFunc = regexp.MustCompile(`(?m)^func (Benchmark[A-Z0-9_]\w*)\(\w+ \*testing\.B\)`)

// Discover lists the packages matching cfg.Packages whose test files define
// benchmarks, with those benchmarks' names.
func Discover(ctx context.Context, cfg RunConfig) ([]Package, error) {
	cfg = cfg.withDefaults()
	args := append([]string{"list", "-e", "-json=ImportPath,Dir,TestGoFiles,XTestGoFiles"}, cfg.Packages...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = cfg.Dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var pkgs []Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath, Dir           string
			TestGoFiles, XTestGoFiles []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkg := Package{ImportPath: p.ImportPath, Dir: p.Dir}
		for _, f := range append(p.TestGoFiles, p.XTestGoFiles...) {
			src, err := os.ReadFile(filepath.Join(p.Dir, f))
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since go list ran
			}
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			for _, m := range benchFunc.FindAllSubmatch(src, -1) {
				name := string(m[1])
				if cfg.Match == nil || cfg.Match.MatchString(name) {
					pkg.Benchmarks = append(pkg.Benchmarks, name)
				}
			}
		}
		if len(pkg.Benchmarks) > 0 {
			pkgs = append(pkgs, pkg)
		}
	}
	return pkgs, nil
}

// RunPackages builds each package's test binary once and runs its
// benchmarks one top-level benchmark at a time, so each gets its own
// timeout, CPU accounting and progress step. A package that does not build
// or a benchmark that fails is recorded, and the run goes on.
func RunPackages(ctx context.Context, cfg RunConfig, pkgs []Package) ([]BenchRun, error) {
	cfg = cfg.withDefaults()
	tmp, err := os.MkdirTemp("", "benchsuite-")
	if err != nil {
		return nil, fmt.Errorf("temp dir for test binaries: %w", err)
	}
	defer os.RemoveAll(tmp)

	for _, p := range pkgs {
		cfg.Progress.AddTotal(len(p.Benchmarks))
	}
	var runs []BenchRun
	for i, p := range pkgs {
		if err := ctx.Err(); err != nil {
			return runs, err
		}
		bin := filepath.Join(tmp, fmt.Sprintf("pkg%d.test", i))
		cfg.Progress.Note("build " + p.ImportPath)
		build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, p.ImportPath)
		build.Dir = cfg.Dir
		if out, err := build.CombinedOutput(); err != nil {
			msg := fmt.Sprintf("build: %v: %s", err, lastLines(out, 5))
			for _, b := range p.Benchmarks {
				runs = append(runs, BenchRun{Package: p.ImportPath, Name: b, Error: msg})
				cfg.Progress.Step(p.ImportPath + " " + b + " (build failed)")
			}
			continue
		}
		for _, b := range p.Benchmarks {
			cfg.Progress.Note(shortPkg(p.ImportPath) + " " + b)
			run := runBinary(ctx, cfg, bin, p, b)
			runs = append(runs, run)
			status := ""
			if run.Error != "" {
				status = " (error)"
			}
			cfg.Progress.Step(shortPkg(p.ImportPath) + " " + b + status)
		}
	}
	return runs, ctx.Err()
}

func runBinary(ctx context.Context, cfg RunConfig, bin string, p Package, name string) BenchRun {
	run := BenchRun{Package: p.ImportPath, Name: name}
	args := []string{
		"-test.run=^$",
		"-test.bench=^" + regexp.QuoteMeta(name) + "$",
		"-test.benchtime=" + cfg.benchTime(name),
		"-test.count=" + fmt.Sprint(cfg.Count),
		"-test.benchmem",
		"-test.v", // prints skips and their reasons
		"-test.timeout=" + cfg.timeout(name).String(),
	}
	if cfg.Short {
		args = append(args, "-test.short")
	}
	// The test binary's own -test.timeout panics with a stack trace; the
	// context is the backstop should the process hang past it.
	rctx, cancel := context.WithTimeout(ctx, cfg.timeout(name)+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(rctx, bin, args...)
	cmd.Dir = p.Dir
	cmd.WaitDelay = 5 * time.Second
	var buf bytes.Buffer
	var w io.Writer = &buf
	if cfg.Log != nil {
		fmt.Fprintf(cfg.Log, "=== %s %s\n", p.ImportPath, name)
		w = io.MultiWriter(&buf, cfg.Log)
	}
	cmd.Stdout = w
	cmd.Stderr = w

	before, cpuErr := ReadCPU()
	start := time.Now()
	err := cmd.Run()
	run.Wall = time.Since(start).Seconds()
	if after, err2 := ReadCPU(); cpuErr == nil && err2 == nil {
		run.MachineCPU = after.Sub(before).Busy.Seconds()
	}
	if ru, ok := processRusage(cmd); ok {
		run.CPU = ru.Seconds()
	}
	out, perr := Parse(bytes.NewReader(buf.Bytes()))
	run.Results, run.Outcomes = out.Results, out.Outcomes
	switch {
	case err != nil:
		run.Error = fmt.Sprintf("%v: %s", err, lastLines(buf.Bytes(), 8))
	case perr != nil:
		run.Error = perr.Error()
	case out.Failed:
		run.Error = "benchmark failed: " + lastLines(buf.Bytes(), 8)
	}
	return run
}

func processRusage(cmd *exec.Cmd) (time.Duration, bool) {
	if cmd.ProcessState == nil {
		return 0, false
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			lines = append(lines, t)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func shortPkg(importPath string) string {
	return strings.TrimPrefix(importPath, "github.com/xdpnet/xdpnet/")
}
