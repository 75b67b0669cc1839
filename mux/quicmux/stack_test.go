package quicmux

import (
	"testing"

	"github.com/xdpnet/xdpnet/mux/internal/testenv"
)

// socketTests are the tests that run again over the engine's netstack, in
// memory and on AF_XDP (TestOverAFXDP).
func socketTests() []testenv.Test {
	return []testenv.Test{
		{Name: "QUICStreamEcho", Fn: TestQUICStreamEcho},
		{Name: "QUICBatchedSends", Fn: TestQUICBatchedSends},
		{Name: "QUICCreditExhaustedThenRaised", Fn: TestQUICCreditExhaustedThenRaised},
		{Name: "QUICManyStreams", Fn: TestQUICManyStreams},
		{Name: "QUICShutdownDrains", Fn: TestQUICShutdownDrains},
		{Name: "QUICPeerResetsStream", Fn: TestQUICPeerResetsStream},
		{Name: "QUICPeerCloses", Fn: TestQUICPeerCloses},
	}
}

// TestOverNetstack runs the socket-level tests over the engine's netstack.
func TestOverNetstack(t *testing.T) { testenv.RunOverNetstack(t, &sockets, socketTests()) }
