// Package pktgen builds test frames and paces a packet sender: the
// reusable half of cmd/pktgen, also used by benchmarks and tests.
//
// Frame sizes follow the Ethernet convention of RFC 2544 section 9: a
// "64-byte frame" is 64 bytes on the wire including the 4-byte FCS, which
// the NIC (or veth) adds, so the buffer handed to the sender is Size-4
// bytes (60..1514). Bit rates are reported for Size-byte frames, without
// preamble and inter-frame gap.
//
// Only the ranges reserved for benchmarking are accepted as addresses:
// 198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180).
package pktgen
