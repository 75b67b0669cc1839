// Package engine is the gateway: configuration, workers, frontends,
// backends, balancing, proxying, retries, drain and metrics.
//
// Frontends accept clients on a [Net] — the AF_XDP netstack ([NewXDPNet]:
// bpf steering, nic ports, package stack) in production, the kernel's
// sockets ([KernelNet]) as the baseline and in unit tests — and carry each
// HTTP request (HTTP/1.1, h2c, HTTP/3) as one HTTP/3 request, and each
// tunnelled TCP connection as one raw QUIC stream, to a server chosen by the
// backend's balancer (round robin, least connections, consistent hash).
// Backend connections are mux.QUICConns pooled by reuse.Pool, one shard per
// worker (one worker per dedicated queue on the xdp data plane), under the
// backend's reuse policy (HAProxy's http-reuse: never, safe, aggressive,
// always).
//
// Retries follow HAProxy's model: a request that never reached a server is
// retried (on another server with redispatch); one that may have reached it
// is retried only if its method is idempotent (RFC 9110 section 9.2.2) and
// its body can be replayed; nothing is retried once a response started, nor
// after a request timeout. Active health checks and failed connects take a
// server out and close its connections; checks bring it back.
//
// Configuration is YAML ([LoadConfig]); demo.yaml ([DemoConfig]) is a
// commented example. Engine.Reload applies a new configuration without
// dropping client connections; Engine.Shutdown drains. The admin address
// serves /metrics (Prometheus), /stats (JSON, read by `xdpnet stats`) and
// /healthz on a kernel socket.
//
// Subpackages: origin is the lab's HTTP/3 and raw-stream origin server;
// enginelab runs the engine on internal/lab's veth topology for the
// end-to-end tests, the benchmarks and `xdpnet demo`.
package engine
