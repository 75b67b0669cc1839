package benchsuite

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Conditions are the facts a figure depends on, recorded with every run.
type Conditions struct {
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Kernel    string    `json:"kernel"`
	GoVersion string    `json:"go_version"`
	GOARCH    string    `json:"goarch"`
	Cores     int       `json:"cores"`
	CPUModel  string    `json:"cpu_model,omitempty"`
	Commit    string    `json:"commit,omitempty"`
	Short     bool      `json:"short"`
	BenchTime string    `json:"benchtime"`
	// BenchTimeFor lists the benchmarks run with a fixed count instead.
	BenchTimeFor map[string]string `json:"benchtime_for,omitempty"`
	Count        int               `json:"count"`
	// LoadAvg is /proc/loadavg's 1-minute figure at the start: other work
	// on the machine.
	LoadAvg float64 `json:"loadavg_1m"`
	// StealPct is the share of CPU time the hypervisor took during the run.
	StealPct float64 `json:"steal_pct"`
	// Env holds the XDPNET_* settings the run saw (hardware interface...).
	Env map[string]string `json:"env,omitempty"`
}

// CollectConditions records what can be known before a run in dir (the
// module root).
func CollectConditions(dir string) Conditions {
	c := Conditions{
		Start:     time.Now().UTC(),
		GoVersion: runtime.Version(),
		GOARCH:    runtime.GOARCH,
		Cores:     runtime.NumCPU(),
		Env:       map[string]string{},
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		c.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		// The toolchain that builds the benchmarks, not the one that built us.
		c.GoVersion = strings.TrimSpace(string(out))
	}
	c.CPUModel = cpuModel()
	cmd := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12")
	cmd.Dir = dir
	if out, err := cmd.Output(); err == nil {
		c.Commit = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			c.LoadAvg, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "XDPNET_") {
			c.Env[k] = v
		}
	}
	return c
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// clockTick is USER_HZ, the unit of /proc/stat; 100 on every Linux ABI Go
// supports.
const clockTick = 100

// CPUSample is a reading of /proc/stat's aggregate line.
type CPUSample struct {
	Busy  time.Duration // user, nice, system, irq, softirq
	Steal time.Duration
	Total time.Duration
}

// ReadCPU reads the machine-wide CPU counters.
func ReadCPU() (CPUSample, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUSample{}, fmt.Errorf("read cpu counters: %w", err)
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (CPUSample, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return CPUSample{}, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	var v [8]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return CPUSample{}, fmt.Errorf("parse /proc/stat field %d: %w", i+1, err)
		}
		v[i] = n
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }
	user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
	busy := user + nice + system + irq + softirq
	return CPUSample{
		Busy:  tick(busy),
		Steal: tick(steal),
		Total: tick(busy + idle + iowait + steal),
	}, nil
}

// Sub is the difference of two samples.
func (s CPUSample) Sub(earlier CPUSample) CPUSample {
	return CPUSample{Busy: s.Busy - earlier.Busy, Steal: s.Steal - earlier.Steal, Total: s.Total - earlier.Total}
}
