// Package shutdown holds the end of a graceful Conn.Shutdown that the
// mux.Conn implementations (quicmux, httpmux) share: wait for the last
// stream, then close, or close hard when the context ends.
//
// It knows only the mux contract; it must not know QUIC, HTTP
// connections or who calls Shutdown (reuse, the engine).
package shutdown
