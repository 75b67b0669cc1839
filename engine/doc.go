// Package engine is the gateway: configuration, workers, frontends,
// backends, balancing, proxying, retries, drain and metrics.
//
// Frontends accept clients on a [Net] — the AF_XDP data plane (package
// dataplane: bpf steering, nic ports, package stack; started from
// [Config.DataPlane]) in production, the kernel's sockets ([KernelNet]) as
// the baseline and in unit tests — and carry each
// HTTP request (HTTP/1.1, h2c, HTTP/3) as one HTTP/3 request, and each
// tunnelled TCP connection as one raw QUIC stream, to a server chosen by the
// backend's balancer (round robin, least connections, consistent hash).
// Backend connections are quicmux.Conns pooled by reuse.Pool, one shard per
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
// Backend faults. A server is dialled by at most reuse.max_dials handshakes
// per worker at once; requests that find no free stream wait (timeouts.queue)
// for a dial in flight or for credit, never start a dial each. Failed dials
// push the server's next dial back (timeouts.backoff_min doubling up to
// backoff_max, jittered), so a restarted or late origin is dialled again
// within about a second of answering; a passing health check or a reload
// (SIGHUP) clears the backoff. An ICMP unreachable on the server's socket
// ends a dial at once and never the socket: a socket that fails for good is
// replaced, never kept. Passive health counts only failures the server
// caused: refused (ICMP unreachable, QUIC CONNECTION_REFUSED, stateless
// reset), handshake failures and handshakes that ran out their own connect
// timeout; health_check.fall of them in a row take it out, and one passing
// check brings it back. The gateway's own refusals never count: a request
// that gave up in the queue, a connection limit, the backoff, a client that
// went away. Requests the gateway cannot serve get 502, 503 or 504 with an
// RFC 9209 Proxy-Status header (error type, next-hop backend/server), a
// one-line body with the reason, a log line and
// xdpnet_backend_failures_total{reason}.
//
// Tunnels: a failure on either side, the frontend idle timeout (no byte
// either way, which is also what a peer that stopped reading looks like)
// or the drain deadline resets the backend stream and closes the client
// connection. Shutdown returns at its deadline whatever is in flight;
// what it cuts is counted.
//
// A server of weight 0 is drained: the balancers skip it, its health checks
// go on, and a backend whose servers all have weight 0 answers 503.
//
// Client limits: a request body must keep coming (each read waits at most
// the frontend's timeouts.body, else 408 and xdpnet_client_timeouts_total;
// HTTP/1.1 and h2c through http.ResponseController.SetReadDeadline, HTTP/3
// through its stream's read deadline). max_connections bounds client
// connections per frontend and over the engine: TCP connections over it are
// accepted and closed at once (the stack's listen backlog has answered the
// SYN already: the client sees a connection that closes, not a refused
// one), QUIC connections get CONNECTION_REFUSED before their handshake
// (quic.Transport.ConnContext); xdpnet_connections_refused_total counts
// both, by frontend and reason.
//
// Configuration is YAML ([LoadConfig]); demo.yaml ([DemoConfig]) is a
// commented example. Engine.Reload applies a new configuration without
// dropping client connections; Engine.Shutdown drains. The admin address
// serves /metrics (Prometheus), /stats (JSON, read by `xdpnet stats`) and
// /healthz on a kernel socket, to GET and HEAD only (405 otherwise); an
// address that is not loopback needs admin_public: true. Both are made from
// one typed snapshot per source ([EngineStats], dataplane.Stats with the
// reuse, nic, bufring, bpf and stack types they hold): the code counts in
// atomics, never in the Prometheus registry, and stats.go's tags (for other
// packages' types, statsmetrics.go's foreignTags) say where each field goes.
//
// The engine does not touch ports, rings, XDP programs or the netstack: it
// starts and stops the data plane as one thing and uses its sockets.
//
// Subpackages: origin is the lab's HTTP/3 and raw-stream origin server;
// enginelab runs the engine on internal/lab's veth topology for the
// end-to-end tests, the benchmarks and `xdpnet demo`.
package engine
