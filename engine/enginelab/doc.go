// Package enginelab runs the engine on internal/lab's veth topology with
// origin servers in the backend namespace and clients in the client
// namespace: the set-up shared by the engine's end-to-end tests, its
// benchmarks and `xdpnet demo`.
//
// The same configuration runs on either stack: "xdp" (AF_XDP ports and the
// netstack own the engine's .1 addresses) or "kernel" (the engine namespace's
// kernel owns them and the proxy uses kernel sockets: the baseline).
//
// It owns lab set-up and teardown for the engine; it must not reach into the
// engine's workers or pools, only its public API.
package enginelab
