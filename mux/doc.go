// Package mux is the contract between multiplexed backend connections and
// the layers that use them: Conn (many streams on one connection, with
// exact stream credit), Stream (a net.Conn with half-close and reset),
// Watcher (told of credit and death), Kind, and the errors every Conn
// shares (ErrNoCredit, ErrGoingAway). reuse/ pools Conns and the engine
// leases their streams knowing only this package.
//
// It owns no connection. Its implementations live below it:
//
//   - quicmux: QUIC connections (quic-go) over a netstack or kernel UDP
//     socket, with their transport, configuration and TLS helpers.
//   - h3: an HTTP/3 client that sends requests on one chosen quicmux.Conn
//     within that connection's stream credit.
//   - httpmux: HTTP/2 (TLS with ALPN h2, or cleartext h2c) and HTTP/1.1
//     client connections over a TCP socket, HTTP/1.1 being the
//     one-stream case.
//   - muxtest: an in-memory fake Conn for the tests of reuse/ and the
//     engine.
//
// It must not know any of them, nor quic-go, sockets or pools: it is
// interfaces and sentinels.
//
// # Errors
//
// Connection-level failures wrap net.ErrClosed (a closed or dead
// connection, ErrGoingAway) or are a sentinel of this package or of the
// implementation, matched with errors.Is.
package mux
