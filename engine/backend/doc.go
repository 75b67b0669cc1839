// Package backend is a configured backend at run time ([Backend]): its
// servers, the balancer that picks one (round robin, least connections,
// consistent hash; weight 0 drains a server), the reuse.Pool of its
// connections (QUIC for h3 and raw, HTTP/2 or HTTP/1.1 over TCP for h2, h2c,
// http1 and http1-tls; package httpmux) with one shard per engine worker
// under the backend's reuse policy, and the dials that fill it. A request
// that takes its connection over (an HTTP/1.1 Upgrade to WebSocket) gets
// one of its own, outside the pool ([Backend.DialDedicated]).
//
// Faults. A server is dialled by at most reuse.max_dials handshakes per
// worker at once. Failed dials push the server's next dial back
// (timeouts.backoff_min doubling up to backoff_max, jittered); a passing
// health check or [Backend.ClearBackoff] (a reload) clears it. An ICMP
// unreachable on a server's own socket ends a dial at once
// ([ErrUnreachable]) and makes the backend PING the server's connections,
// closing those that do not answer; a request that waits timeouts.probe for
// its response headers has its connection PINGed the same way
// ([Backend.Suspect]). A socket that fails for good is replaced. Passive
// health ([Backend.ConnectFailed]) counts only failures the server caused;
// health_check.fall of them in a row take it out, active checks bring it
// back, and a server taken out has its connections closed. [Classify] maps
// the error that ended a request or tunnel to the gateway's answer (status,
// reason, RFC 9209 Proxy-Status error type).
//
// Resumption and 0-RTT (early.go). Each server keeps its newest TLS session
// ticket, offered by every dial. With early_data, a dial holding one
// returns before the handshake and [Conn.RoundTrip] sends GET and HEAD
// without a body in 0-RTT data, retrying a 425 Too Early after the
// handshake; a frontend sends a request again on another connection when
// [Conn.EarlyRejected] says the server rejected the early data.
//
// It knows servers, connections and the network stack (netapi.Net); it must
// not know frontends, clients or how HTTP is served to them: a frontend
// picks a server (Pick), leases a connection or stream (Attach) and
// reports what happened.
package backend
