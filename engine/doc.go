// Package engine is the gateway: configuration, workers, frontends,
// backends, balancing, proxying, retries, drain and metrics.
//
// Frontends accept clients on a [Net] — the AF_XDP netstack in production,
// the kernel's sockets as the baseline and in unit tests — and carry each
// HTTP request (HTTP/1.1, h2c, HTTP/3) as one HTTP/3 request, and each
// tunnelled TCP connection as one raw QUIC stream, to a server chosen by
// the backend's balancer. Backend QUIC connections are pooled per worker
// and reused according to the backend's reuse policy.
//
// Retries follow HAProxy's model: a request that never reached a server is
// retried (on another server with redispatch); one that may have reached it
// is retried only if its method is idempotent (RFC 9110 section 9.2.2) and
// its body can be replayed; nothing is retried once a response started.
package engine
