package stacktest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// testCtx bounds every network wait of a test so a bug shows as a failure,
// not a hung test binary. The bound is not a timing assertion.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// echo serves l until it is closed, echoing every connection.
func echo(t *testing.T, l net.Listener) {
	testutil.Serve(t, l, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

func TestTCPTransferBothFamilies(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr netip.Addr
	}{{"v4", stacktest.AddrA4}, {"v6", stacktest.AddrA6}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := stacktest.Pair(t)
			l, err := a.ListenTCP(netip.AddrPortFrom(tc.addr, 8080))
			if err != nil {
				t.Fatal(err)
			}
			echo(t, l)
			ctx := testCtx(t)
			c, err := b.DialTCP(ctx, netip.AddrPortFrom(tc.addr, 8080))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))

			// 4 MiB of random bytes each way, checked by hash: many
			// segments, window updates and buffer growth.
			data := make([]byte, 4<<20)
			rnd := rand.New(rand.NewPCG(1, 2))
			for i := range data {
				data[i] = byte(rnd.Uint32())
			}
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(data)
				if err == nil {
					err = c.(interface{ CloseWrite() error }).CloseWrite()
				}
				werr <- err
			}()
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), sha(data)) {
				t.Fatalf("echoed %d bytes, hash mismatch or short (want %d)", n, len(data))
			}
			if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(); got != map[bool]netip.Addr{true: stacktest.AddrB4, false: stacktest.AddrB6}[tc.addr.Is4()] {
				t.Errorf("local address %v, want b's address of the same family", got)
			}
		})
	}
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestUDPEcho(t *testing.T) {
	a, b := stacktest.Pair(t)
	srv, err := a.ListenUDP(netip.AddrPortFrom(netip.Addr{}, 4433)) // dual-stack any
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("server read: %v", err)
				}
				return
			}
			if _, err := srv.WriteTo(buf[:n], from); err != nil {
				t.Errorf("server write: %v", err)
				return
			}
		}
	}()
	for _, dst := range []netip.Addr{stacktest.AddrA4, stacktest.AddrA6} {
		cl, err := b.ListenUDP(netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		_ = cl.SetDeadline(time.Now().Add(30 * time.Second))
		msg := []byte("ping " + dst.String())
		if _, err := cl.WriteTo(msg, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 4433))); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		n, from, err := cl.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], msg) {
			t.Errorf("got %q, want %q", buf[:n], msg)
		}
		if got := from.(*net.UDPAddr).AddrPort().Addr().Unmap(); got != dst {
			t.Errorf("reply from %v, want %v", got, dst)
		}
		cl.Close()
	}
	srv.Close()
	<-done
	if _, _, err := srv.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after Close: %v, want net.ErrClosed", err)
	}
	if _, err := srv.WriteTo([]byte("x"), &net.IPAddr{}); err == nil {
		t.Error("WriteTo with a non-UDP address succeeded")
	}
}

func TestListenerCloseUnblocksAccept(t *testing.T) {
	a, _ := stacktest.Pair(t)
	l, err := a.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, 0))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if err := l.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
}

func TestConnCloseReportsErrClosed(t *testing.T) {
	a, b := stacktest.Pair(t)
	l, err := a.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, 80))
	if err != nil {
		t.Fatal(err)
	}
	echo(t, l)
	c, err := b.DialTCP(testCtx(t), netip.AddrPortFrom(stacktest.AddrA4, 80))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
}

func TestDialRefusedAndCanceled(t *testing.T) {
	_, b := stacktest.Pair(t)
	_, err := b.DialTCP(testCtx(t), netip.AddrPortFrom(stacktest.AddrA4, 9)) // nobody listens
	if err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.DialTCP(ctx, netip.AddrPortFrom(stacktest.AddrA4, 9)); !errors.Is(err, context.Canceled) {
		t.Errorf("dial with canceled context: %v, want context.Canceled", err)
	}
}

// TestLinkCutRecovery cuts the wire mid-transfer; TCP must deliver every
// byte once the wire is back.
func TestLinkCutRecovery(t *testing.T) {
	r := stacktest.NewPair(t, stacktest.Options{})
	l, err := r.A.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, 7))
	if err != nil {
		t.Fatal(err)
	}
	echo(t, l)
	c, err := r.B.DialTCP(testCtx(t), netip.AddrPortFrom(stacktest.AddrA4, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	buf := make([]byte, len(msg))

	r.Link.SetUp(false)
	if _, err := c.Write(msg); err != nil { // buffered by TCP, frames dropped
		t.Fatal(err)
	}
	// Let the retransmission timer fire at least once while cut: wait
	// until the wire has dropped a retransmission, not for a duration.
	testutil.WaitFor(t, "a retransmission dropped on the cut wire", func() bool { return r.Link.Dropped() >= 2 })
	r.Link.SetUp(true)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, msg) {
		t.Fatal("echo differs after recovery")
	}
}

func TestStackAddressAndRouteErrors(t *testing.T) {
	s, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AddAddress(netip.MustParsePrefix("198.18.1.1/24")); !errors.Is(err, stack.ErrNoNIC) {
		t.Errorf("AddAddress without NIC: %v, want ErrNoNIC", err)
	}
	if err := s.AddRoute(netip.MustParsePrefix("198.18.2.0/24"), netip.MustParseAddr("198.18.1.9")); !errors.Is(err, stack.ErrNoNIC) {
		t.Errorf("AddRoute via unknown gateway: %v, want ErrNoNIC", err)
	}
	if _, err := stack.New(stack.Options{TCP: stack.TCPOptions{CongestionControl: "bbr9"}}); err == nil {
		t.Error("unknown congestion control accepted")
	}
	if _, err := stack.New(stack.Options{TCP: stack.TCPOptions{SendBuffer: stack.BufferRange{Min: 10, Default: 5, Max: 20}}}); err == nil {
		t.Error("inverted buffer range accepted")
	}
	s.Close()
	if _, err := s.ListenTCP(netip.AddrPortFrom(netip.IPv4Unspecified(), 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ListenTCP on closed stack: %v, want net.ErrClosed", err)
	}
}

// TestGatewayRoute gives b an address off the shared subnet: a reaches it
// only through its default gateway (b), resolved by ARP.
func TestGatewayRoute(t *testing.T) {
	r := stacktest.NewPair(t, stacktest.Options{})
	if err := r.NICB.AddAddress(netip.MustParsePrefix("198.18.2.1/32")); err != nil {
		t.Fatal(err)
	}
	if err := r.NICA.SetDefaultGateway(stacktest.AddrB4); err != nil {
		t.Fatal(err)
	}
	far := netip.MustParseAddrPort("198.18.2.1:5000")
	l, err := r.B.ListenTCP(far)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, l)
	c, err := r.A.DialTCP(testCtx(t), far)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("via gw")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "via gw" {
		t.Fatalf("got %q, %v", buf, err)
	}
}
