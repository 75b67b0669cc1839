package mux

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// useNetstack makes the test's sockets come from two netstacks joined in
// memory (stacktest): UDP for QUIC, TCP for framed connections. It changes
// package state, so tests using it must not run in parallel.
func useNetstack(t *testing.T) {
	oldPackets, oldTCP := packetPair, tcpListen
	t.Cleanup(func() { packetPair, tcpListen = oldPackets, oldTCP })
	packetPair = func(t testing.TB) (net.PacketConn, net.PacketConn) {
		t.Helper()
		a, b := stacktest.Pair(t)
		cli, err := a.ListenUDP(netip.AddrPortFrom(stacktest.AddrA4, 0))
		if err != nil {
			t.Fatal(err)
		}
		srv, err := b.ListenUDP(netip.AddrPortFrom(stacktest.AddrB4, 443))
		if err != nil {
			t.Fatal(err)
		}
		return cli, srv
	}
	tcpListen = func(t testing.TB) (net.Listener, DialFunc) {
		t.Helper()
		a, b := stacktest.Pair(t)
		dst := netip.AddrPortFrom(stacktest.AddrB4, 7000)
		ln, err := b.ListenTCP(dst)
		if err != nil {
			t.Fatal(err)
		}
		return ln, func(ctx context.Context) (net.Conn, error) { return a.DialTCP(ctx, dst) }
	}
}

// TestOverNetstack runs the socket-level tests over the engine's netstack.
func TestOverNetstack(t *testing.T) {
	useNetstack(t)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"QUICStreamEcho", TestQUICStreamEcho},
		{"QUICBatchedSends", TestQUICBatchedSends},
		{"QUICCreditExhaustedThenRaised", TestQUICCreditExhaustedThenRaised},
		{"QUICManyStreams", TestQUICManyStreams},
		{"QUICShutdownDrains", TestQUICShutdownDrains},
		{"QUICPeerResetsStream", TestQUICPeerResetsStream},
		{"QUICPeerCloses", TestQUICPeerCloses},
		{"HTTP3Client", TestHTTP3Client},
		{"FramedConcurrentVirtualConnections", TestFramedConcurrentVirtualConnections},
		{"FramedCredit", TestFramedCredit},
		{"FramedPeerDisappearsAndReconnect", TestFramedPeerDisappearsAndReconnect},
		{"FramedSlowReaderDoesNotStall", TestFramedSlowReaderDoesNotStall},
		{"FramedShutdownDrains", TestFramedShutdownDrains},
		{"FramedPeerResets", TestFramedPeerResets},
		{"HTTP3GoAway", TestHTTP3GoAway},
	} {
		t.Run(tc.name, tc.fn)
	}
}
