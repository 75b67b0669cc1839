// Command pktgen sends bounded UDP test traffic out of a lab interface.
//
// This kernel has no pktgen module and Debian's xdp-trafficgen fails on it,
// so xdpnet brings its own generator, in two modes:
//
//   - live (default): the XDP live-frames generator of package bpf. The
//     kernel runs an XDP_TX program on the test frame once per frame
//     (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES) and sends it out of the
//     interface, without a socket or a copy from userspace. On a veth the
//     receiving end must have NAPI: an XDP program attached or GRO on.
//   - afxdp: an AF_XDP socket (nic.Port) on one queue of the interface,
//     in copy mode on veth; finer pacing, lower rates.
//
// Usage:
//
//	pktgen -lab [-sink gro|xdp-drop] [flags]                   # own lab: client peer -> engine veth
//	pktgen -netns NAME -dev IFNAME -dst ADDR[:PORT] [flags]    # an existing namespace, e.g. a lab's
//
// Flags bound every run: -count N and/or -duration D (at least one; a run
// with only -count still stops after an hour). -size is the Ethernet frame
// size including the 4-byte FCS, 64..1518 (66 minimum for IPv6): the frame
// handed to the kernel is 4 bytes shorter. -flows N spreads the UDP source
// port over N values. -rate PPS paces the run (live frames in bursts of
// 100 ms, AF_XDP in 1 ms ones). Only 198.18.0.0/15 and 2001:2::/48 are
// accepted as addresses (RFC 2544, RFC 5180).
//
// A progress line goes to stderr every second, the summary (frames, pps,
// bit/s of size-byte frames, and the interface's own tx counters) to stdout.
//
// It owns flag parsing and reporting only; frame building and pacing live in
// internal/pktgen, the programs in bpf, the sockets in nic. It knows nothing
// of netstack or the engine.
package main
