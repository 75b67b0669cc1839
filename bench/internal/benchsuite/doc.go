// Package benchsuite runs the project's benchmarks and turns them into
// reproducible figures.
//
// It drives the Go benchmarks every package writes (test binaries built with
// `go test -c`, run one top-level benchmark at a time), parses their result
// lines including custom b.ReportMetric units, pairs each impl=X
// sub-benchmark with its impl=baseline sibling measured in the same run, and
// records the conditions of the run (cores, kernel, Go version, the mode and
// ring parameters encoded in sub-benchmark names, the CPU time each
// benchmark cost). On top of that it runs an RFC 2544 (section 26.1)
// zero-loss throughput search per frame size against anything that can offer
// frames at a given rate (the Offerer interface), each rate found confirmed
// by a longer trial that also measures latency, and draws PNG figures.
//
// Output: a JSON results file, a Markdown table spliced into BENCH.md
// between the markers <!-- benchsuite:begin --> and <!-- benchsuite:end -->
// (the rest of the file is left alone) and PNG plots.
//
// Every run is bounded: each benchmark gets a timeout, RFC 2544 searches a
// bounded number of trials of bounded duration.
package benchsuite
