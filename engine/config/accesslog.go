package config

import (
	"os"
	"path/filepath"
)

// AccessLog is the engine's access log: one JSON line per HTTP request
// (package engine/accesslog has the fields), written by one goroutine from
// a bounded queue so that the data path never waits for the disk. When
// the queue is full lines are dropped and counted in
// xdpnet_access_log_dropped_total. SIGHUP reopens the file (log rotation:
// rename it, then SIGHUP). A reload that changes these keys starts a new
// log. Every frontend logs unless it sets access_log: false.
type AccessLog struct {
	// Path is "stdout" or a file, appended to (created mode 0640);
	// required.
	Path string `yaml:"path"`
	// Sample is the share of requests logged, above 0 and at most 1
	// (0.01: one in a hundred, chosen at random). Default 1.
	Sample *float64 `yaml:"sample"`
	// Queue is how many lines may wait for the writer; default 4096.
	Queue int `yaml:"queue"`
}

func (a *AccessLog) setDefaults() {
	if a == nil {
		return
	}
	if a.Sample == nil {
		a.Sample = new(1.0)
	}
	if a.Queue == 0 {
		a.Queue = 4096
	}
}

func (a *AccessLog) validate(bad func(field, format string, args ...any)) {
	if a == nil {
		return
	}
	switch a.Path {
	case "":
		bad("access_log.path", "missing (stdout or a file)")
	case "stdout":
	default:
		if fi, err := os.Stat(filepath.Dir(a.Path)); err != nil || !fi.IsDir() {
			bad("access_log.path", "directory of %q does not exist", a.Path)
		}
	}
	if s := *a.Sample; !(s > 0 && s <= 1) {
		bad("access_log.sample", "%v is outside (0, 1]", s)
	}
	if a.Queue < 1 || a.Queue > 1<<20 {
		bad("access_log.queue", "%d is outside 1..1048576", a.Queue)
	}
}
