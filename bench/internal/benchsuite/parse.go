package benchsuite

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Result is one benchmark result line of `go test -bench`.
type Result struct {
	// Name is the full name without the -GOMAXPROCS suffix,
	// e.g. "BenchmarkRecv/impl=xdpnet/size=64".
	Name string `json:"name"`
	// Procs is GOMAXPROCS during the run (the -N suffix; 1 when absent).
	Procs int `json:"procs"`
	// N is the number of iterations b.N the figures are averaged over.
	N int64 `json:"n"`
	// Metrics maps a unit ("ns/op", "B/op", "pps", any b.ReportMetric
	// unit) to its value.
	Metrics map[string]float64 `json:"metrics"`
}

// Params returns the key=value segments of the sub-benchmark name, e.g.
// {"impl": "xdpnet", "size": "64"} for "BenchmarkRecv/impl=xdpnet/size=64".
func (r Result) Params() map[string]string { return nameParams(r.Name) }

func nameParams(name string) map[string]string {
	segs := strings.Split(name, "/")
	p := map[string]string{}
	for _, s := range segs[1:] {
		if k, v, ok := strings.Cut(s, "="); ok {
			p[k] = v
		}
	}
	return p
}

// Top returns the top-level benchmark name ("BenchmarkRecv").
func (r Result) Top() string {
	top, _, _ := strings.Cut(r.Name, "/")
	return top
}

// Outcome is a benchmark that did not produce figures: it was skipped or it
// failed, with the reason it printed.
type Outcome struct {
	Name   string `json:"name"`
	Status string `json:"status"` // "skip" or "fail"
	Reason string `json:"reason,omitempty"`
}

// Output is what one run of a test binary printed, parsed.
type Output struct {
	Results  []Result  `json:"results"`
	Outcomes []Outcome `json:"outcomes,omitempty"`
	// CPU is the "cpu:" header line (the processor model).
	CPU string `json:"cpu,omitempty"`
	// Failed reports a FAIL line for the package or a panic.
	Failed bool `json:"failed,omitempty"`
}

// Parse reads the plain-text output of a test binary run with -test.bench
// (and -test.v, which makes skips visible). Lines it does not understand
// (log output of the benchmarks) are ignored.
//
// A skip or failure's reason is the indented log lines: with -test.v they
// come before the "--- SKIP:" line, without it after.
func Parse(r io.Reader) (Output, error) {
	var out Output
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		cur     *Outcome // the SKIP/FAIL whose indented reason lines follow
		pending string   // indented lines since the last unindented one
	)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		indented := strings.HasPrefix(line, "    ") && trimmed != "" && !strings.HasPrefix(trimmed, "--- ")
		if indented {
			if cur != nil {
				cur.Reason = joinReason(cur.Reason, trimmed)
			} else {
				pending = joinReason(pending, trimmed)
			}
			continue
		}
		if cur != nil {
			out.Outcomes = append(out.Outcomes, *cur)
			cur = nil
		}
		reason := pending
		pending = ""
		switch {
		case strings.HasPrefix(trimmed, "--- SKIP: "), strings.HasPrefix(trimmed, "--- FAIL: "):
			status := "skip"
			if strings.HasPrefix(trimmed, "--- FAIL: ") {
				status = "fail"
			}
			rest := trimmed[len("--- SKIP: "):]
			name, _, _ := strings.Cut(rest, " ")
			name, _ = splitProcs(name)
			o := Outcome{Name: name, Status: status, Reason: reason}
			if reason != "" {
				out.Outcomes = append(out.Outcomes, o)
			} else {
				cur = &o
			}
		case strings.HasPrefix(line, "cpu: "):
			out.CPU = strings.TrimPrefix(line, "cpu: ")
		case line == "FAIL" || strings.HasPrefix(line, "FAIL\t") || strings.HasPrefix(line, "panic: "):
			out.Failed = true
		case strings.HasPrefix(line, "Benchmark"):
			if res, ok := parseResult(line); ok {
				out.Results = append(out.Results, res)
			}
		}
	}
	if cur != nil {
		out.Outcomes = append(out.Outcomes, *cur)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read benchmark output: %w", err)
	}
	return out, nil
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// parseResult parses "BenchmarkX/a=b-2  1000  12.5 ns/op  3.0 pps".
func parseResult(line string) (Result, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 {
		return Result{}, false
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || n <= 0 {
		return Result{}, false
	}
	name, procs := splitProcs(f[0])
	res := Result{Name: name, Procs: procs, N: n, Metrics: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Result{}, false
		}
		res.Metrics[f[i+1]] = v
	}
	return res, true
}

// splitProcs removes the -GOMAXPROCS suffix the testing package appends.
func splitProcs(name string) (string, int) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name, 1
	}
	p, err := strconv.Atoi(name[i+1:])
	if err != nil || p <= 0 {
		return name, 1
	}
	return name[:i], p
}
