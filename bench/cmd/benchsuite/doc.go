// Command benchsuite runs xdpnet's benchmark suite and writes its results:
// a JSON results file, a generated section of BENCH.md and PNG plots.
//
// It lives in the bench module, so the plotting libraries stay out of the
// main module; it measures the module in its working directory, which
// `make bench` sets to the repository root:
//
//	go -C bench build -o ../bin/ ./cmd/benchsuite
//	./bin/benchsuite -out bench/results/2026-11-21.json -md BENCH.md
//	./bin/benchsuite -short   # seconds per figure: the CI smoke run
//
// It runs every Go benchmark of the module (one top-level benchmark at a
// time, each bounded by -timeout), pairs implementations with their
// same-run baselines, then the RFC 2544 throughput searches (root only: they
// build a veth lab) and draws the figures.
//
// It owns running and reporting; it must not know any package's internals:
// it sees them only through their benchmarks' output, the lab and the
// devices of bench/internal/benchsuite.
package main
