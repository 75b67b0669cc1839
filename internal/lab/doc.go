// Package lab builds the veth test topology every privileged test, the demo
// and the benchmarks run on.
//
// A Lab is three network namespaces joined by two veth pairs:
//
//	client ns                 engine ns                    backend ns
//	veth-engine  <------>  veth-client  veth-backend  <------>  veth-engine
//	198.18.1.2..           (engine .1: netstack)                198.18.2.10..
//	2001:2:0:1::2..                                             2001:2:0:2::10..
//
// The engine's .1 / ::1 addresses are not configured on the engine ns kernel:
// the engine's own TCP/IP stack owns them. Kernel peers reach the other side's
// network through the engine's .1 with a static neighbour entry for it, so no
// ARP or neighbour solicitation is needed before the first packet.
//
// Namespaces are named (bind-mounted under /run/netns, visible to `ip netns`)
// and unique per process and topology: xdpn-<pid>-<seq>-<role>. New removes
// the leftovers of runs whose creating process is dead, so a test killed by
// SIGKILL leaves nothing behind for the next run: the namespaces go, and
// with them their veth pairs and the XDP programs attached there; processes
// NS.Start started die with the test (Pdeathsig). Everything is configured
// with netlink and ioctl; nothing shells out to ip or ethtool.
//
// Only the address ranges reserved for benchmarking (RFC 2544 198.18.0.0/15,
// RFC 5180 2001:2::/48) are used, and both ends of every veth pair live in
// namespaces the Lab created.
package lab
