package quicmux

import (
	"net"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/stack/stacktest"
)

func TestConnectedPacketConn(t *testing.T) {
	a, b := stacktest.Pair(t)
	dst := netip.AddrPortFrom(stacktest.AddrB4, 4433)
	srv, err := b.ListenUDP(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := a.DialUDP(netip.AddrPort{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := ConnectedPacketConn(c)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// quic-go writes to the address it was dialed with: equal to the
	// socket's peer, not the same pointer.
	peer := net.UDPAddrFromAddrPort(dst)
	if _, err := pc.WriteTo([]byte("q"), peer); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_, from, err := srv.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WriteTo([]byte("k"), from); err != nil {
		t.Fatal(err)
	}
	n, addr, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "k" || addr.String() != dst.String() {
		t.Fatalf("ReadFrom: %q from %v, %v", buf[:n], addr, err)
	}
	if _, err := pc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(198, 18, 1, 2), Port: 4434}); err == nil {
		t.Fatal("write to another peer succeeded")
	}
	if allocs := testing.AllocsPerRun(100, func() { sameAddr(peer, c.RemoteAddr()) }); allocs != 0 {
		t.Fatalf("address check allocates %v times", allocs)
	}
	if _, err := ConnectedPacketConn(srv.(net.Conn)); err == nil {
		t.Fatal("unconnected socket accepted")
	}
}
