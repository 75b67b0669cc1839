package config

// DefaultGCPercent is gc.percent's default (see GC).
const DefaultGCPercent = 400

// GC tunes the Go garbage collector of the gateway process (xdpnet run).
//
// The gateway's live heap is small: packets sit in the UMEM, which is not
// Go heap, and each request allocates short-lived objects (request,
// headers, streams) that die with it. With Go's default target (GOGC=100) a
// small live heap is collected very often, and the collector took about a
// tenth of the gateway's CPU under load. A higher percent trades memory for
// that CPU: the heap may grow to live × (1 + percent/100) between
// collections. Measured on the peer benchmark (../shared/peers, wrk
// through the xdp data plane to HTTP/3 origins, same-run rounds): see
// BENCH.md.
type GC struct {
	// Percent is the collector's target, as GOGC: a collection starts
	// once the heap has grown by Percent percent over what the last one
	// left live. -1 turns the collector off until the heap reaches
	// MemoryLimit, which is then required. 0 or unset: 400, unless the
	// process was started with GOGC in its environment, which then wins.
	// A reload applies a new value.
	Percent int `yaml:"percent"`
	// MemoryLimit is the collector's soft memory limit, as GOMEMLIMIT:
	// Go's whole memory (heap, stacks, runtime), not the UMEM or
	// netstack's mappings. Near it the collector runs as often as it must,
	// whatever Percent says, so it bounds what a high Percent costs.
	// "1GiB" or bytes; default 0: none, unless GOMEMLIMIT is set in the
	// environment, which then wins. A reload applies a new value.
	MemoryLimit Size `yaml:"memory_limit"`
}

func (g *GC) validate(bad func(field, format string, args ...any)) {
	switch {
	case g.Percent < -1:
		bad("gc.percent", "%d must be -1 (off until gc.memory_limit), 0 (the default) or above", g.Percent)
	case g.Percent == -1 && g.MemoryLimit == 0:
		bad("gc.percent", "-1 (off) needs gc.memory_limit, or the heap grows without bound")
	}
}
