package testenv

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// Sockets makes the sockets of one test: a pair of UDP sockets for QUIC,
// and a TCP listener with a dialer to it for HTTP/2 and HTTP/1.1 connections. Each is
// closed by its user or when the test ends.
type Sockets struct {
	PacketPair func(t testing.TB) (client, server net.PacketConn)
	TCPListen  func(t testing.TB) (net.Listener, func(context.Context) (net.Conn, error))
}

// Kernel is the default: kernel sockets on loopback.
func Kernel() Sockets {
	return Sockets{
		PacketPair: func(t testing.TB) (net.PacketConn, net.PacketConn) {
			t.Helper()
			a, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			b, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				a.Close()
				t.Fatal(err)
			}
			return a, b
		},
		TCPListen: func(t testing.TB) (net.Listener, func(context.Context) (net.Conn, error)) {
			t.Helper()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			return ln, func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			}
		},
	}
}

// Netstack makes each test's sockets on two netstacks joined in memory
// (stacktest), client on one and server on the other.
func Netstack() Sockets {
	return Sockets{
		PacketPair: func(t testing.TB) (net.PacketConn, net.PacketConn) {
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
		},
		TCPListen: func(t testing.TB) (net.Listener, func(context.Context) (net.Conn, error)) {
			t.Helper()
			a, b := stacktest.Pair(t)
			dst := netip.AddrPortFrom(stacktest.AddrB4, 7000)
			ln, err := b.ListenTCP(dst)
			if err != nil {
				t.Fatal(err)
			}
			return ln, func(ctx context.Context) (net.Conn, error) { return a.DialTCP(ctx, dst) }
		},
	}
}

// Use makes *sockets, a test package's sockets, s until t ends. It changes
// package state, so tests using it must not run in parallel.
func Use(t *testing.T, sockets *Sockets, s Sockets) {
	old := *sockets
	t.Cleanup(func() { *sockets = old })
	*sockets = s
}

// Test is a test to run again over other sockets.
type Test struct {
	Name string
	Fn   func(*testing.T)
}

// RunOverNetstack runs tests with *sockets made on two netstacks joined in
// memory.
func RunOverNetstack(t *testing.T, sockets *Sockets, tests []Test) {
	Use(t, sockets, Netstack())
	for _, tc := range tests {
		t.Run(tc.Name, tc.Fn)
	}
}
