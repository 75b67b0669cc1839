// Package stacktest joins two stack.Stacks in memory, for unprivileged tests
// of code that runs on the engine's netstack (mux, engine, stack itself).
//
// The link is gVisor's link/pipe endpoint under link/ethernet, so ARP and NDP
// run as on a wire. It starts no goroutine: a frame written on one side is
// delivered to the other side within the writer's call.
//
// It owns in-memory links and test topologies; it must not know about mux,
// reuse or the engine that use it.
package stacktest
