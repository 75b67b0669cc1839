package main

import (
	"math"
	"os"
	"runtime/debug"
	"sync"

	"github.com/xdpnet/xdpnet/engine/config"
)

// startGC is what the runtime took from GOGC and GOMEMLIMIT at start,
// read before applyGC first changes it.
var startGC = sync.OnceValues(func() (percent int, limit int64) {
	percent = debug.SetGCPercent(100)
	debug.SetGCPercent(percent)
	return percent, debug.SetMemoryLimit(-1) // a negative limit only reads it
})

// applyGC sets the garbage collector's target and soft memory limit from
// g (config.GC) at start and on each reload. A key left unset takes what
// GOGC or GOMEMLIMIT in the environment gave the runtime at start, else
// the default.
func applyGC(g config.GC) {
	envPercent, envLimit := startGC()
	percent := g.Percent
	if percent == 0 {
		percent = config.DefaultGCPercent
		if os.Getenv("GOGC") != "" {
			percent = envPercent
		}
	}
	debug.SetGCPercent(percent)
	limit := int64(g.MemoryLimit)
	if limit == 0 {
		limit = math.MaxInt64 // none
		if os.Getenv("GOMEMLIMIT") != "" {
			limit = envLimit
		}
	}
	debug.SetMemoryLimit(limit)
}
