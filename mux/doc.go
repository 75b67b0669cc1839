// Package mux puts many streams on one connection behind a single interface,
// Conn: QUIC connections (quic-go) over a netstack UDP socket, and framed
// virtual connections over one TCP connection. reuse/ pools Conns; it knows
// them only through this interface.
package mux
