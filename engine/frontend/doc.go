// Package frontend is the gateway's client side: a [Frontend] listens on a
// socket of the network stack (netapi.Net) and carries each HTTP request
// (HTTP/1.1, h2c, HTTPS with h2 or HTTP/1.1, HTTP/3) as one request over
// the backend's HTTP (HTTP/3, HTTP/2 or HTTP/1.1), and each TCP connection of
// a tcp frontend as one raw QUIC stream, to a server of its backend
// (package backend). Each client connection is served by one worker: on a
// stack that knows it, the worker of the RX queue the connection arrived
// on, else one chosen by a hash of the client's address.
//
// Routes: an HTTP request goes to the first of its frontend's routes whose
// host (exact or *.suffix) and path prefix match, else to the frontend's
// own backend (the default route), else gets 404 (no Proxy-Status: no hop
// was tried). A route's retries and request and probe timeouts replace its
// backend's. A reload swaps the whole route table at once (SwapRoutes).
//
// PROXY protocol v2 (proxy_protocol): connections from trusted sources
// must start with a header, read off the accept loop under a timeout, and
// take the client address it carries (RemoteAddr); others are served as
// they are. Raw backends with send_proxy_protocol get a header first on
// each tunnel. Access log records (package accesslog) are made here, per
// request, never waiting for the writer.
//
// Retries follow HAProxy's model: a request that never reached a server is
// retried (on another server with redispatch); one that may have reached it
// is retried only if its method is idempotent (RFC 9110 section 9.2.2) and
// its body (up to [MaxReplayBody]) can be replayed; nothing is retried once
// a response started, nor after a request timeout. Requests the gateway
// cannot serve get 502, 503 or 504 with an RFC 9209 Proxy-Status header
// (error type, next-hop backend/server), a one-line body with the reason, a
// log line and xdpnet_backend_failures_total{reason}.
//
// Trailers pass both ways and "TE: trailers" is kept (see trailers.go);
// a response that breaks off after its headers resets the client's stream
// (http.ErrAbortHandler) rather than ending it as if complete.
//
// Tunnels: a failure on either side, the frontend idle timeout (no byte
// either way, which is also what a peer that stopped reading looks like)
// or the drain deadline resets the backend stream and closes the client
// connection.
//
// WebSocket (upgrade.go): an HTTP/1.1 handshake (RFC 6455 section 4.1)
// routed to an http1 or http1-tls backend goes on a backend connection of
// its own (backend.Backend.DialDedicated) with Upgrade and Connection
// kept; after a 101 the client connection is hijacked and spliced with it
// like a tunnel, staying the frontend's (max_connections, memory budget)
// until it ends. h2, h2c and h3 backends get no such request: 501.
//
// Client limits: a request body must keep coming (each read waits at most
// the frontend's timeouts.body, else 408 and xdpnet_client_timeouts_total;
// HTTP/1.1 and h2c through http.ResponseController.SetReadDeadline, HTTP/3
// through its stream's read deadline; each response chunk sent restarts a
// pending wait, so a live bidirectional stream is not cut). A response
// body must keep leaving: each write waits at most timeouts.send (the
// stream's write deadline; an HTTP/2 connection stuck writing is closed a
// quarter of it later), else the client's stream is reset and
// xdpnet_client_timeouts_total counts it. max_connections bounds client
// connections per frontend and over the engine ([Env.Conns]): TCP
// connections over it are accepted and closed at once (the stack's listen
// backlog has answered the SYN already: the client sees a connection that
// closes, not a refused one), QUIC connections get CONNECTION_REFUSED
// before their handshake (quic.Transport.ConnContext);
// xdpnet_connections_refused_total counts both, by frontend and reason.
//
// Memory budget (buffers.memory): each client TCP connection reserves its
// netstack buffers' caps (TCPBudget; a parked one less) and each QUIC
// connection, client or backend, what quic-go may buffer for it
// (QUICBudget), in the pool of the payload buffers; a new client
// connection without room waits buffers.accept_wait, then is refused
// (reason budget: a QUIC one with CONNECTION_REFUSED before its
// handshake); a request without a payload buffer within buffers.wait, or
// whose backend dial got no room (backend.ErrBudget), gets 503 with result
// no_buffer.
//
// TLS: https and h3 frontends pick a certificate by SNI (exact DNS name,
// then a one-label wildcard, else the first; certs.go) from a set a reload
// replaces atomically (Frontend.Reconfigure), so new handshakes get new
// certificates and established connections are untouched. http and https
// frontends send the Alt-Svc (RFC 7838) their configuration resolved.
//
// Idle HTTP/1.1 connections of http and https frontends are parked
// (park.go): once an exchange is complete on the wire, the handler hijacks
// the connection from the http.Server, which frees the server's goroutine
// and its 4 KiB read and write buffers, and the connection waits for its
// next request on a read notification of the stack (no goroutine on
// netstack) with its session and its max_connections slot kept; it
// returns to the same server when the client speaks or closes, and is
// closed after timeouts.idle. An idle keep-alive connection then costs its
// TCP endpoint and bookkeeping (under 8 KB on the AF_XDP data plane
// instead of 30; 15 KB over TLS instead of 45: the engine's
// BenchmarkIdleConnMemory). A busy connection (its client back within
// 10ms) is parked only once per run of exchanges, since each park costs a
// hijack and a fresh server connection. HTTP/2 connections (h2c and h2)
// cannot be parked, their HTTP/2 state living in net/http's goroutines;
// they are served from goroutines of their own rather than the one that
// accepted them (handoff.go), which frees the HTTP/1.1 buffers and the
// handshake's stack that net/http keeps for them (35 to 45 KB idle). An
// https frontend runs its TLS handshakes itself for that.
//
// Request framing: an HTTP/1.x request framed by both Content-Length and
// Transfer-Encoding, or by Transfer-Encoding in HTTP/1.0, is refused with
// 400 and its connection closed (RFC 9112 sections 6.1 and 6.3; the
// connection's bytes are scanned for it since net/http drops the field,
// framing.go).
//
// It knows clients and HTTP serving and uses backends through their
// exported methods; it must not know how a backend dials, checks or
// balances, nor the engine's lifecycle (the engine makes, swaps and shuts
// down frontends) or the admin endpoint.
package frontend
