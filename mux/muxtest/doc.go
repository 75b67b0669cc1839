// Package muxtest provides an in-memory fake of mux.Conn whose stream credit,
// death, MAX_STREAMS raises and ping results are scripted by the test, and a
// manual clock. It lets reuse/ and engine/ be tested without sockets and
// without sleeping.
//
// It owns fakes only: it must not know about reuse's trees or the engine, and
// it never opens a socket.
package muxtest
