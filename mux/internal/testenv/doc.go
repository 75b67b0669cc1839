// Package testenv is what the tests of mux's packages (quicmux, h3, httpmux)
// share: a goroutine-leak check, a bounded poll, a recording mux.Watcher,
// an echo round trip over any mux.Conn, and the sockets the tests run over
// (kernel loopback, two netstacks joined in memory, or the lab's engine
// netstack on AF_XDP against the backend namespace's kernel).
//
// Only test files import it. It knows the mux contract but not the packages
// that implement it (their internal tests import it, so it cannot import
// them): it hands out sockets and listeners, never connections.
package testenv
