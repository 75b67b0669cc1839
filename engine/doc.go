// Package engine is the gateway's lifecycle: [New], [Engine.Start],
// [Engine.Reload], [Engine.Shutdown] and [Engine.Close] over frontends and
// backends made from a configuration, on one network stack, with the admin
// endpoint and the stats snapshot ([Engine.Stats]).
//
// Its parts, each a package that says in its doc what it owns and what it
// must not know, imported one way, down the layers:
//
//	engine            lifecycle, reload, wiring (this package)
//	├── frontend      http/h3/tcp frontends: the HTTP proxy, retries,
//	│   │             tunnels, client limits, the worker of a connection
//	│   └── backend   servers, balancing, health checks, dials and backoff,
//	│                 the reuse.Pool, ICMP watch and probes, failure classes
//	├── admin         /metrics, /stats, /healthz; snapshot -> Prometheus
//	├── stats         live counters and the typed snapshot
//	├── config        configuration types, defaults, validation, demo.yaml
//	└── netapi        the network stack interface (Net) and Kernel
//
// Frontends accept clients on a netapi.Net — the AF_XDP data plane
// (package dataplane: bpf steering, nic ports, package stack; started from
// config.Config.DataPlane) in production, the kernel's sockets
// (netapi.Kernel) as the baseline and in unit tests. Backend connections
// are quicmux.Conns pooled by reuse.Pool, one shard per worker (one worker
// per dedicated queue on the xdp data plane), under the backend's reuse
// policy (HAProxy's http-reuse: never, safe, aggressive, always).
//
// Engine.Reload applies a new configuration without dropping client
// connections: frontends whose protocol and address are unchanged keep
// their sockets and switch to the new backends, certificates (read again
// from their files by config.Load: new handshakes get them) and Alt-Svc; a
// changed backend is rebuilt and the old one retires once its requests
// finish; unchanged backends stay, their servers' reconnect backoff
// cleared (SIGHUP is the operator's "try again now"). Engine.Shutdown
// drains: listeners close, requests and tunnels in flight finish until its
// deadline, which cuts what is left and counts it; then backend connections
// close.
//
// The admin address serves /metrics, /stats and /healthz (package admin) on
// a kernel socket; an address that is not loopback needs admin_public:
// true. Both /metrics and /stats are made from one typed snapshot per
// source (stats.EngineStats, dataplane.Stats with the reuse, nic, bufring,
// bpf and stack types they hold): the code counts in atomics, never in the
// Prometheus registry.
//
// The engine does not touch ports, rings, XDP programs or the netstack: it
// starts and stops the data plane as one thing and uses its sockets.
//
// Subpackages besides those above: origin is the lab's HTTP/3 and
// raw-stream origin server; enginelab runs the engine on internal/lab's
// veth topology for the end-to-end tests, the benchmarks and `xdpnet demo`.
package engine
