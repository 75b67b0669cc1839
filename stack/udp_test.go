package stack_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// udpPair is a listening socket on b and a socket on a connected to it.
func udpPair(t *testing.T) (srv net.PacketConn, cli net.Conn) {
	t.Helper()
	a, b := stacktest.Pair(t)
	dst := netip.AddrPortFrom(stacktest.AddrB4, 4433)
	srv, err := b.ListenUDP(dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cli, err = a.DialUDP(netip.AddrPort{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return srv, cli
}

func TestUDPData(t *testing.T) {
	srv, cli := udpPair(t)
	if got := cli.RemoteAddr().String(); got != "198.18.1.2:4433" {
		t.Fatalf("RemoteAddr %s", got)
	}
	buf := make([]byte, 2048)
	var from net.Addr
	for i := range 3 {
		msg := []byte{'q', byte(i)}
		if _, err := cli.Write(msg); err != nil {
			t.Fatal(err)
		}
		n, addr, err := srv.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("ReadFrom: %q, %v", buf[:n], err)
		}
		if addr.String() != cli.LocalAddr().String() {
			t.Fatalf("sender %s, want %s", addr, cli.LocalAddr())
		}
		// The sender's address is cached, not made per datagram.
		if from != nil && addr != from {
			t.Fatalf("ReadFrom returned a new address for the same sender")
		}
		from = addr
		// The answer goes back to the address ReadFrom returned, and a
		// connected socket takes its own peer's address in WriteTo.
		if _, err := srv.WriteTo([]byte("k"), addr); err != nil {
			t.Fatal(err)
		}
		if n, err := cli.Read(buf); err != nil || string(buf[:n]) != "k" {
			t.Fatalf("Read: %q, %v", buf[:n], err)
		}
		peer := &net.UDPAddr{IP: net.ParseIP("198.18.1.2"), Port: 4433} // 16-byte form
		if _, err := cli.(net.PacketConn).WriteTo([]byte("w"), peer); err != nil {
			t.Fatal(err)
		}
		if n, _, err := srv.ReadFrom(buf); err != nil || string(buf[:n]) != "w" {
			t.Fatalf("ReadFrom: %q, %v", buf[:n], err)
		}
	}
	// A datagram longer than the buffer is truncated, as on a kernel socket.
	if _, err := cli.Write(bytes.Repeat([]byte{'x'}, 100)); err != nil {
		t.Fatal(err)
	}
	if n, _, err := srv.ReadFrom(buf[:10]); err != nil || n != 10 {
		t.Fatalf("short ReadFrom: %d, %v", n, err)
	}
}

func TestUDPDualStack(t *testing.T) {
	a, b := stacktest.Pair(t)
	srv, err := b.ListenUDP(netip.AddrPortFrom(netip.Addr{}, 4433))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	buf := make([]byte, 64)
	for _, dst := range []netip.Addr{stacktest.AddrB4, stacktest.AddrB6} {
		cli, err := a.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(dst, 4433))
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		if _, err := cli.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		_, from, err := srv.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.WriteTo([]byte("pong"), from); err != nil {
			t.Fatalf("answer to %s: %v", from, err)
		}
		if n, err := cli.Read(buf); err != nil || string(buf[:n]) != "pong" {
			t.Fatalf("%s: %q, %v", dst, buf[:n], err)
		}
	}
}

func TestUDPBadAddress(t *testing.T) {
	srv, _ := udpPair(t)
	for _, addr := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4(198, 18, 1, 1), Port: 1},
		(*net.UDPAddr)(nil),
		&net.UDPAddr{IP: net.IP{1, 2, 3}, Port: 1},
		&net.UDPAddr{IP: net.IPv4(198, 18, 1, 1), Port: 0},
		&net.UDPAddr{IP: net.IPv4(198, 18, 1, 1), Port: 70000},
	} {
		if _, err := srv.WriteTo([]byte("x"), addr); err == nil {
			t.Errorf("WriteTo(%#v) succeeded", addr)
		}
	}
	// An unconnected socket has no peer to Write to.
	if _, err := srv.(net.Conn).Write([]byte("x")); err == nil {
		t.Error("Write on an unconnected socket succeeded")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}

func TestUDPReadDeadline(t *testing.T) {
	srv, cli := udpPair(t)
	buf := make([]byte, 64)
	// A past deadline fails even with data queued, as the net package does.
	if _, err := cli.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := srv.ReadFrom(buf); !isTimeout(err) {
		t.Fatalf("past deadline: %v", err)
	}
	// Clearing it reads the queued datagram.
	srv.SetReadDeadline(time.Time{})
	if n, _, err := srv.ReadFrom(buf); err != nil || string(buf[:n]) != "a" {
		t.Fatalf("after clearing: %q, %v", buf[:n], err)
	}
	// A blocked read ends at a future deadline.
	srv.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := srv.ReadFrom(buf); !isTimeout(err) {
		t.Fatalf("future deadline: %v", err)
	}
	// Moving the deadline forward after it fired makes reads work again.
	srv.SetReadDeadline(time.Now().Add(time.Hour))
	if _, err := cli.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if n, _, err := srv.ReadFrom(buf); err != nil || string(buf[:n]) != "b" {
		t.Fatalf("extended deadline: %q, %v", buf[:n], err)
	}
	// Another goroutine's SetReadDeadline(now) wakes a blocked read (what
	// quic-go's Transport.Close does).
	srv.SetReadDeadline(time.Time{})
	done := make(chan error)
	go func() { _, _, err := srv.ReadFrom(buf); done <- err }()
	srv.SetDeadline(time.Now())
	if err := <-done; !isTimeout(err) {
		t.Fatalf("woken by deadline: %v", err)
	}
}

func TestUDPCloseWhileBlocked(t *testing.T) {
	srv, cli := udpPair(t)
	errs := make(chan error, 2)
	for _, c := range []net.PacketConn{srv, cli.(net.PacketConn)} {
		go func() { _, _, err := c.ReadFrom(make([]byte, 64)); errs <- err }()
	}
	srv.Close()
	cli.Close()
	for range 2 {
		if err := <-errs; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	}
	if err := srv.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
	if _, err := cli.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestUDPStackCloseWhileBlocked(t *testing.T) {
	s, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.ListenUDP(netip.AddrPortFrom(netip.Addr{}, 53))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { _, _, err := c.ReadFrom(make([]byte, 64)); done <- err }()
	s.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after stack close: %v", err)
	}
	if _, err := s.ListenUDP(netip.AddrPort{}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("listen on a closed stack: %v", err)
	}
}

// holdLink keeps a reference to every packet written to it until release,
// as a busy NIC does: the sending socket's buffer space stays in use.
type holdLink struct {
	*channel.Endpoint
	mu   sync.Mutex
	held []*gstack.PacketBuffer
}

func (l *holdLink) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range pkts.AsSlice() {
		l.held = append(l.held, p.IncRef())
	}
	return pkts.Len(), nil
}

func (l *holdLink) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.held {
		p.DecRef()
	}
	l.held = nil
}

// heldLink is a stack whose only NIC is a holdLink.
func heldLink(t *testing.T) (*stack.Stack, *holdLink) {
	t.Helper()
	s, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := &holdLink{Endpoint: channel.New(1, 1500, "")}
	t.Cleanup(func() { s.Close(); l.release() })
	n, err := s.AddNIC(l, stack.NICOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.AddAddress(netip.MustParsePrefix("198.18.1.1/24")); err != nil {
		t.Fatal(err)
	}
	return s, l
}

// writesUntilBlocked counts the 1000-byte datagrams c takes before a write
// would block (it ends at the write deadline; nothing drains meanwhile).
func writesUntilBlocked(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	defer c.SetWriteDeadline(time.Time{})
	for n := 0; n < 100000; n++ {
		if _, err := c.Write(make([]byte, 1000)); err != nil {
			if !isTimeout(err) {
				t.Fatalf("write %d: %v", n, err)
			}
			return n
		}
	}
	t.Fatal("send buffer never filled")
	return 0
}

func TestUDPWriteBlocksOnFullSendBuffer(t *testing.T) {
	s, ch := heldLink(t)
	c, err := s.DialUDP(netip.AddrPort{}, netip.MustParseAddrPort("198.18.1.2:9"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uc := c.(*stack.UDPConn)
	if err := uc.SetWriteBuffer(0); err != nil { // clamped to the minimum, 4 KiB
		t.Fatal(err)
	}
	// The netstack lets a write in while any room is left; a datagram
	// counts with its headers.
	if n := writesUntilBlocked(t, c); n < 4 || n > 5 {
		t.Fatalf("4 KiB send buffer took %d datagrams", n)
	}
	ch.release()
	if err := uc.SetWriteBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	if n := writesUntilBlocked(t, c); n < 60 || n > 66 {
		t.Fatalf("64 KiB send buffer took %d datagrams", n)
	}

	// A blocked write resumes when the link releases packets.
	done := make(chan error)
	go func() { _, err := c.Write([]byte("late")); done <- err }()
	ch.release()
	if err := <-done; err != nil {
		t.Fatalf("write after drain: %v", err)
	}

	// Close wakes a blocked write.
	writesUntilBlocked(t, c)
	go func() { _, err := c.Write([]byte("never")); done <- err }()
	c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked write after close: %v", err)
	}
}

// fullQdisc is a NIC queue that is always full.
type fullQdisc struct{}

func (fullQdisc) WritePacket(*gstack.PacketBuffer) tcpip.Error { return &tcpip.ErrNoBufferSpace{} }
func (fullQdisc) Close()                                       {}

// TestUDPFullNICQueueDrops: a datagram the NIC's queue refuses is dropped
// and counted, not a write error, as Linux does without IP_RECVERR (gVisor's
// datagram endpoint maps it). quic-go closes the connection on a write
// error, and with quic-go's 4 MiB send buffer one socket can outrun the
// 1000-packet queue.
func TestUDPFullNICQueueDrops(t *testing.T) {
	s, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := &holdLink{Endpoint: channel.New(1, 1500, "")}
	n, err := s.AddNIC(l, stack.NICOptions{QDisc: fullQdisc{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.AddAddress(netip.MustParsePrefix("198.18.1.1/24")); err != nil {
		t.Fatal(err)
	}
	c, err := s.DialUDP(netip.AddrPort{}, netip.MustParseAddrPort("198.18.1.2:9"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		if m, err := c.Write([]byte("dropped")); err != nil || m != 7 {
			t.Fatalf("write to a full NIC queue: %d, %v", m, err)
		}
	}
	if got := s.Netstack().NICInfo()[n.ID()].Stats.TxPacketsDroppedNoBufferSpace.Value(); got != 3 {
		t.Fatalf("%d drops counted, want 3", got)
	}
}

func TestUDPReadBuffer(t *testing.T) {
	srv, cli := udpPair(t)
	uc := srv.(*stack.UDPConn)
	// queued sends 1000 datagrams of 1000 bytes (the pair delivers within
	// Write) and counts those the receive buffer kept.
	queued := func() int {
		for range 1000 {
			if _, err := cli.Write(make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
		}
		defer srv.SetReadDeadline(time.Time{})
		buf := make([]byte, 2048)
		for n := 0; ; n++ {
			// A deadline per read: only a read on an empty queue waits
			// for it, so a slow (-race, loaded) drain is not cut short.
			srv.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := srv.ReadFrom(buf); err != nil {
				if !isTimeout(err) {
					t.Fatal(err)
				}
				return n
			}
		}
	}
	// gVisor's default is 212 KiB.
	if n := queued(); n < 200 || n > 230 {
		t.Fatalf("default receive buffer kept %d datagrams", n)
	}
	if err := uc.SetReadBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	if n := queued(); n != 1000 {
		t.Fatalf("1 MiB receive buffer kept %d of 1000 datagrams", n)
	}
	if err := uc.SetReadBuffer(1); err != nil { // clamped to 4 KiB
		t.Fatal(err)
	}
	if n := queued(); n != 5 {
		t.Fatalf("4 KiB receive buffer kept %d datagrams", n)
	}
	if err := uc.SetReadBuffer(-1); err == nil {
		t.Fatal("negative size accepted")
	}
}

// TestUDPConcurrent runs writers and a reader at once (for -race).
func TestUDPConcurrent(t *testing.T) {
	srv, cli := udpPair(t)
	uc := srv.(*stack.UDPConn)
	uc.SetReadBuffer(4 << 20)
	// Resolve the peer first: netstack holds at most 256 datagrams while
	// ARP runs and drops the rest, which left the reader below waiting for
	// good (a CI run hung). A lost datagram now fails at the deadline.
	buf := make([]byte, 64)
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := cli.Write([]byte("resolve")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := cli.Write([]byte{byte(w), byte(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := make(map[[2]byte]bool)
	for len(seen) < writers*each {
		n, _, err := srv.ReadFrom(buf)
		if err != nil || n != 2 {
			t.Fatalf("read %d after %d: %v", n, len(seen), err)
		}
		seen[[2]byte(buf[:2])] = true
	}
	wg.Wait()
}

// BenchmarkUDPRoundTrip: a connected socket sends 1200 bytes, an unbound
// one reads it and answers to the address it got, the first reads the
// answer; one goroutine (the in-memory pair delivers within Write).
// impl=gonet is gVisor's gonet.UDPConn on the same stacks, the sockets
// stack used before UDPConn.
func BenchmarkUDPRoundTrip(b *testing.B) {
	for _, impl := range []string{"gonet", "udpconn"} {
		b.Run("impl="+impl, func(b *testing.B) {
			a, bs := stacktest.Pair(b)
			dst := netip.AddrPortFrom(stacktest.AddrB4, 4433)
			var srv net.PacketConn
			var cli net.Conn
			if impl == "gonet" {
				s, err := gonet.DialUDP(bs.Netstack(), &tcpip.FullAddress{Addr: tcpip.AddrFrom4(stacktest.AddrB4.As4()), Port: 4433}, nil, ipv4.ProtocolNumber)
				if err != nil {
					b.Fatal(err)
				}
				c, err := gonet.DialUDP(a.Netstack(), nil, &tcpip.FullAddress{Addr: tcpip.AddrFrom4(stacktest.AddrB4.As4()), Port: 4433}, ipv4.ProtocolNumber)
				if err != nil {
					b.Fatal(err)
				}
				srv, cli = s, c
			} else {
				var err error
				if srv, err = bs.ListenUDP(dst); err != nil {
					b.Fatal(err)
				}
				if cli, err = a.DialUDP(netip.AddrPort{}, dst); err != nil {
					b.Fatal(err)
				}
			}
			defer srv.Close()
			defer cli.Close()
			msg, buf := make([]byte, 1200), make([]byte, 2048)
			b.ReportAllocs()
			b.SetBytes(2 * int64(len(msg)))
			for b.Loop() {
				if _, err := cli.Write(msg); err != nil {
					b.Fatal(err)
				}
				_, from, err := srv.ReadFrom(buf)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := srv.WriteTo(msg, from); err != nil {
					b.Fatal(err)
				}
				if _, err := cli.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
