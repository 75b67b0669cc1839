package bpf

import "github.com/cilium/ebpf"

// ErrNotSupported is wrapped by every error that reports a kernel or NIC
// feature as absent (XDP mode, AF_XDP, zero-copy, BPF_PROG_RUN live frames).
// It is cilium/ebpf's own sentinel, so feature probes from that library match
// it too; nic/ and stack/ re-export it.
var ErrNotSupported = ebpf.ErrNotSupported
