// Package bpf holds xdpnet's XDP programs and the Go side of their maps.
//
// Steering (steer.c) runs on every engine-facing interface: it sends the
// frames addressed to the engine to the AF_XDP socket of the queue they
// arrived on (XSKMAP[rx_queue_index]) and passes everything else to the
// kernel, counting each frame once in per-CPU counters. The engine's address
// set is a map updated at run time. The program is attached through a
// bpf_link, so it goes away with the process that attached it, even when
// that process is killed.
//
// Generator (gen.c) is the live-frames packet generator: BPF_PROG_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES runs it once per frame, and it transmits the
// test frame out of the ingress interface (XDP_TX). cmd/pktgen and the
// benchmarks drive it through internal/pktgen.
//
// The C sources sit beside their bpf2go output (*_bpfel.go, *_bpfel.o),
// which is committed; `make generate` rebuilds it with clang and must leave
// no diff. Errors about kernel or driver features that are absent wrap
// ErrNotSupported.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel steer steer.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type gen_config gen gen.c -- -mcpu=v3
