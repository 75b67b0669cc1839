package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/xdpnet/xdpnet/engine/config"
)

// applyGC sets the runtime's collector from the config, and a reload that
// removes the keys brings back the defaults (GOGC and GOMEMLIMIT are not
// set in the test's environment: t.Setenv clears them).
func TestApplyGC(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	percent := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
	check := func(what string, wantPercent int, wantLimit int64) {
		t.Helper()
		p := debug.SetGCPercent(wantPercent) // reads it, leaves it
		if l := debug.SetMemoryLimit(-1); p != wantPercent || l != wantLimit {
			t.Errorf("%s: GC percent %d, memory limit %d; want %d, %d", what, p, l, wantPercent, wantLimit)
		}
	}
	applyGC(config.GC{Percent: -1, MemoryLimit: 256 << 20})
	check("set", -1, 256<<20)
	applyGC(config.GC{})
	check("unset", config.DefaultGCPercent, math.MaxInt64)
}
