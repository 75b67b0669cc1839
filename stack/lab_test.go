package stack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/link/qdisc/fifo"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/stack"
)

// labEngine is a netstack on AF_XDP ports of the lab's client link.
type labEngine struct {
	l     *lab.Lab
	lk    lab.Link
	s     *stack.Stack
	ep    *stack.Endpoint
	nic   *stack.NIC
	steer *bpf.Steering
	pools []interface{ CheckConservation() error }
	ports []*nic.Port
}

// newLabEngine builds a lab and a stack on its client link with one port per
// queue, each port's nic.Config edited by the tune functions; everything is
// closed when t ends.
func newLabEngine(t testing.TB, lo lab.Options, eo stack.EndpointOptions, so stack.Options, tune ...func(*nic.Config)) *labEngine {
	t.Helper()
	l := labtest.New(t, lo)
	e := &labEngine{l: l, lk: l.ClientLink}
	var ports []stack.Port
	err := l.Engine.Do(func() error {
		var err error
		e.steer, err = bpf.LoadSteering(bpf.SteeringOptions{Queues: max(e.lk.Queues, 1)})
		if err != nil {
			return err
		}
		if err := errors.Join(e.steer.AddAddr(e.lk.EngineV4), e.steer.AddAddr(e.lk.EngineV6),
			e.steer.Attach(e.lk.Index, bpf.ModeNative)); err != nil {
			return err
		}
		for q := range max(e.lk.Queues, 1) {
			cfg := nic.Config{
				Ifindex: e.lk.Index, Queue: q, Map: e.steer,
				ZeroCopy: nic.ZeroCopyOff, BusyPoll: labBusyPoll(),
			}
			for _, f := range tune {
				f(&cfg)
			}
			p, err := nic.Open(cfg)
			if err != nil {
				return err
			}
			ports = append(ports, p)
			e.ports = append(e.ports, p)
			e.pools = append(e.pools, p.Pool())
		}
		return nil
	})
	if e.steer != nil {
		t.Cleanup(func() { e.steer.Close() })
	}
	if err != nil {
		for _, p := range ports {
			p.Close()
		}
		privtest.SkipIfNotSupported(t, err)
	}
	if e.s, err = stack.New(so); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.close(t) })
	eo.MAC = e.lk.MAC
	if os.Getenv("XDPNET_NOQDISC") != "" {
		// Experiment: the endpoint without AddXDPNIC's queueing discipline.
		if e.ep, err = stack.NewEndpoint(ports, eo); err == nil {
			e.nic, err = e.s.AddNIC(e.ep, stack.NICOptions{Name: e.lk.Name})
		}
	} else if os.Getenv("XDPNET_FIFOQDISC") != "" {
		// Experiment: gVisor's fifo queueing discipline (one goroutine
		// per queue) instead of AddXDPNIC's default.
		if e.ep, err = stack.NewEndpoint(ports, eo); err == nil {
			e.nic, err = e.s.AddNIC(e.ep, stack.NICOptions{Name: e.lk.Name, QDisc: fifo.New(e.ep, e.ep.Queues(), 1000)})
		}
	} else {
		e.nic, e.ep, err = e.s.AddXDPNIC(ports, eo, stack.NICOptions{Name: e.lk.Name})
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{netip.PrefixFrom(e.lk.EngineV4, e.lk.Net4.Bits()), netip.PrefixFrom(e.lk.EngineV6, e.lk.Net6.Bits())} {
		if err := e.nic.AddAddress(p); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// labBusyPoll is how long the ports spin before parking in the runtime poller:
// XDPNET_BUSYPOLL (a duration) or 20µs.
func labBusyPoll() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("XDPNET_BUSYPOLL")); err == nil {
		return d
	}
	return 20 * time.Microsecond
}

// close closes the stack and checks that the endpoint drained its TX rings
// and that every port's frame accounting holds.
func (e *labEngine) close(t testing.TB) {
	if err := e.s.Close(); err != nil {
		t.Errorf("stack close: %v", err)
	}
	if e.ep == nil {
		return
	}
	if err := e.ep.CloseErr(); err != nil {
		t.Errorf("endpoint close: %v", err)
	}
	for i, p := range e.pools {
		if err := p.CheckConservation(); err != nil {
			t.Errorf("queue %d: %v", i, err)
		}
	}
}

// dialClient opens a kernel TCP connection from the client namespace.
func (e *labEngine) dialClient(t testing.TB, dst netip.AddrPort) net.Conn {
	t.Helper()
	var c net.Conn
	err := e.l.Client.Do(func() (err error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *labEngine) logStats(t testing.TB) {
	t.Helper()
	t.Logf("endpoint: %+v", stack.Total(e.ep.Stats()))
	tcp := e.s.Netstack().Stats().TCP
	t.Logf("netstack tcp: retransmits %d timeouts %d fast-retransmits %d checksum errors %d",
		tcp.Retransmits.Value(), tcp.Timeouts.Value(), tcp.FastRetransmit.Value(), tcp.ChecksumErrors.Value())
}

// labTransferSize is 1 GiB (the figure) without the race detector
// and -short; under either the verified transfer shrinks to fit CI's budget.
func labTransferSize() int {
	if raceEnabled || testing.Short() {
		return 64 << 20
	}
	return 1 << 30
}

// TestLabTCPTransfer moves labTransferSize bytes each way between a kernel
// client and a netstack server over AF_XDP, both families, verified by hash.
func TestLabTCPTransfer(t *testing.T) {
	t.Parallel() // its own lab namespaces
	size := labTransferSize()
	for _, fam := range []string{"v4", "v6"} {
		t.Run(fam, func(t *testing.T) {
			e := newLabEngine(t, lab.Options{}, stack.EndpointOptions{}, stack.Options{})
			addr := e.lk.EngineV4
			if fam == "v6" {
				addr = e.lk.EngineV6
			}
			l, err := e.s.ListenTCP(netip.AddrPortFrom(addr, 5201))
			if err != nil {
				t.Fatal(err)
			}
			serveHashAndSend(t, l, size)
			c := e.dialClient(t, netip.AddrPortFrom(addr, 5201))
			start := time.Now()
			verifyTransfer(t, c, size, size, 5*time.Minute)
			el := time.Since(start)
			t.Logf("%d MiB each way in %v: %.2f Gbit/s total", size>>20, el, float64(2*size)*8/el.Seconds()/1e9)
			e.logStats(t)
			if d := stack.Total(e.ep.Stats()).RXDropChecksum(); d != 0 {
				t.Errorf("%d frames with bad checksums from a peer with TX checksum offload off", d)
			}
		})
	}
}

// TestLabNetstackClient has netstack dial a kernel server: ARP from the
// engine's side, and the engine as TCP sender of a verified stream.
func TestLabNetstackClient(t *testing.T) {
	t.Parallel() // its own lab namespaces
	e := newLabEngine(t, lab.Options{}, stack.EndpointOptions{}, stack.Options{})
	peer := e.lk.PeerV4()[0]
	var ln net.Listener
	if err := e.l.Client.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(peer, 6000).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	serveHashAndSend(t, ln, 8<<20)
	transfer(t, e.s, netip.AddrPortFrom(peer, 6000), 8<<20, 8<<20)
}

// TestLabConcurrentConnections opens 1,000 kernel connections to a netstack
// echo server at once, each sending and checking a message.
func TestLabConcurrentConnections(t *testing.T) {
	t.Parallel() // its own lab namespaces
	const conns = 1000
	e := newLabEngine(t, lab.Options{}, stack.EndpointOptions{}, stack.Options{})
	dst := netip.AddrPortFrom(e.lk.EngineV4, 7)
	l, err := e.s.ListenTCP(dst)
	if err != nil {
		t.Fatal(err)
	}
	echoServe(t, l)
	cs := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	// Dial all first, so all are open at once.
	err = e.l.Client.Do(func() error {
		d := net.Dialer{Timeout: 30 * time.Second}
		for range conns {
			c, err := d.Dial("tcp", dst.String())
			if err != nil {
				return fmt.Errorf("dial %d: %w", len(cs), err)
			}
			cs = append(cs, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			msg := fmt.Appendf(nil, "hello %d", i)
			if _, err := c.Write(msg); err != nil {
				errs <- err
				return
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil {
				errs <- fmt.Errorf("conn %d: %w", i, err)
				return
			}
			if !bytes.Equal(buf, msg) {
				errs <- fmt.Errorf("conn %d: echo %q", i, buf)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.s.Netstack().Stats().TCP.CurrentEstablished.Value(); got < conns {
		t.Errorf("netstack has %d established connections, want at least %d", got, conns)
	}
}

var echoBufs = sync.Pool{New: func() any { return new([2048]byte) }}

func echoServe(t testing.TB, l net.Listener) {
	testutil.Serve(t, l, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
		// A pooled 2 KiB buffer: io.Copy's own 32 KiB one per
		// connection made the benchmark process's garbage
		// collector the largest cost of a connection-rate run.
		buf := echoBufs.Get().(*[2048]byte)
		defer echoBufs.Put(buf)
		_, _ = io.CopyBuffer(c, c, buf[:])
	})
}

// TestLabUDPEcho has kernel UDP clients of both families talk to a netstack
// echo socket.
func TestLabUDPEcho(t *testing.T) {
	t.Parallel() // its own lab namespaces
	e := newLabEngine(t, lab.Options{}, stack.EndpointOptions{}, stack.Options{})
	srv, err := e.s.ListenUDP(netip.AddrPortFrom(netip.Addr{}, 4433))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteTo(buf[:n], from)
		}
	}()
	for _, dst := range []netip.Addr{e.lk.EngineV4, e.lk.EngineV6} {
		var c net.Conn
		if err := e.l.Client.Do(func() (err error) {
			c, err = net.Dial("udp", netip.AddrPortFrom(dst, 4433).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// Sizes up to the MTU; a datagram that needs fragments too.
		for _, size := range []int{1, 512, 1400, 4000} {
			msg := bytes.Repeat([]byte{byte(size)}, size)
			var got []byte
			// UDP may lose the first datagram while neighbours resolve:
			// retry a bounded number of times.
			for try := 0; try < 5 && got == nil; try++ {
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 65536)
				if n, err := c.Read(buf); err == nil {
					got = buf[:n]
				}
			}
			if !bytes.Equal(got, msg) {
				t.Errorf("%v: %d-byte echo: got %d bytes", dst, size, len(got))
			}
		}
		c.Close()
	}
}

// TestLabPingAndNeighbours pings the engine from the kernel (ICMP echo by
// netstack), after flushing the peer's static neighbour entry so that the
// peer resolves the engine by ARP / NDP, answered by netstack. The engine
// resolves the peer in the other direction to reply.
func TestLabPingAndNeighbours(t *testing.T) {
	t.Parallel() // its own lab namespaces
	e := newLabEngine(t, lab.Options{}, stack.EndpointOptions{}, stack.Options{})
	for _, dst := range []netip.Addr{e.lk.EngineV4, e.lk.EngineV6} {
		t.Run(dst.String(), func(t *testing.T) {
			err := e.l.Client.Do(func() error {
				h, err := netlink.NewHandle()
				if err != nil {
					return err
				}
				defer h.Close()
				fam := netlink.FAMILY_V4
				if dst.Is6() {
					fam = netlink.FAMILY_V6
				}
				// Drop the static entry: the kernel must ask.
				_ = h.NeighDel(&netlink.Neigh{LinkIndex: e.lk.PeerIndex, Family: fam, IP: dst.AsSlice()})
				if err := ping(dst, 3); err != nil {
					return err
				}
				neighs, err := h.NeighList(e.lk.PeerIndex, fam)
				if err != nil {
					return err
				}
				for _, n := range neighs {
					if ip, _ := netip.AddrFromSlice(n.IP); ip.Unmap() == dst {
						if !bytes.Equal(n.HardwareAddr, e.lk.MAC) {
							return fmt.Errorf("peer learned %v for %v, want %v", n.HardwareAddr, dst, e.lk.MAC)
						}
						if n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) == 0 {
							return fmt.Errorf("peer's entry for %v in state %#x", dst, n.State)
						}
						return nil
					}
				}
				return fmt.Errorf("peer has no neighbour entry for %v after pinging it", dst)
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	icmp := e.s.Netstack().Stats().ICMP
	if icmp.V4.PacketsSent.EchoReply.Value() == 0 || icmp.V6.PacketsSent.EchoReply.Value() == 0 {
		t.Errorf("netstack sent echo replies v4 %d v6 %d", icmp.V4.PacketsSent.EchoReply.Value(), icmp.V6.PacketsSent.EchoReply.Value())
	}
}

// ping sends count ICMP echo requests from a raw socket of the calling
// thread's namespace and waits for the replies.
func ping(dst netip.Addr, count int) error {
	network, proto := "ip4:icmp", 1
	var typ, replyTyp icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, proto = "ip6:ipv6-icmp", 58
		typ, replyTyp = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	c, err := icmp.ListenPacket(network, "")
	if err != nil {
		return err
	}
	defer c.Close()
	for seq := 1; seq <= count; seq++ {
		msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: 0x5e, Seq: seq, Data: []byte("xdpnet ping")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			buf := make([]byte, 1500)
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("ping %v seq %d: %w", dst, seq, err)
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != replyTyp {
				continue
			}
			if echo, ok := m.Body.(*icmp.Echo); ok && echo.Seq == seq && from.String() == dst.String() {
				break
			}
		}
	}
	return nil
}

// TestLabMSS checks the MSS both sides agree on for the link's MTU.
func TestLabMSS(t *testing.T) {
	t.Parallel() // its own lab namespaces
	e := newLabEngine(t, lab.Options{}, stack.EndpointOptions{}, stack.Options{})
	for _, tc := range []struct {
		dst     netip.Addr
		maxMSS  int // MTU minus IP and TCP headers
		minMSS  int // the same minus the timestamp option
		network string
	}{
		{e.lk.EngineV4, 1460, 1448, "v4"},
		{e.lk.EngineV6, 1440, 1428, "v6"},
	} {
		l, err := e.s.ListenTCP(netip.AddrPortFrom(tc.dst, 8001))
		if err != nil {
			t.Fatal(err)
		}
		echoServe(t, l)
		c := e.dialClient(t, netip.AddrPortFrom(tc.dst, 8001))
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var mss int
		var serr error
		_ = raw.Control(func(fd uintptr) { mss, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) })
		c.Close()
		if serr != nil {
			t.Fatal(serr)
		}
		if mss < tc.minMSS || mss > tc.maxMSS {
			t.Errorf("%s: kernel client's MSS %d, want %d..%d (netstack advertises MTU-based MSS)", tc.network, mss, tc.minMSS, tc.maxMSS)
		}
	}
}

// TestLabLinkDownRecovery takes the engine's veth down in the middle of a
// transfer; TCP must finish it, verified, once the link is back.
func TestLabLinkDownRecovery(t *testing.T) {
	t.Parallel() // its own lab namespaces
	e := newLabEngine(t, lab.Options{}, stack.EndpointOptions{}, stack.Options{})
	dst := netip.AddrPortFrom(e.lk.EngineV4, 5202)
	l, err := e.s.ListenTCP(dst)
	if err != nil {
		t.Fatal(err)
	}
	const size = 32 << 20
	serveHashAndSend(t, l, size)
	c := e.dialClient(t, dst)
	done := make(chan struct{})
	go func() {
		defer close(done)
		verifyTransfer(t, c, size, size, 5*time.Minute)
	}()
	// Cut the link once data flows, for a second, then restore it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for stack.Total(e.ep.Stats()).RXBytes < 1<<20 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if err := e.l.SetLinkUp(e.lk, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the outage itself, not a timing assertion
	select {
	case <-done:
		// Finished before the link came back: the outage missed it.
		t.Error("transfer ended before the link came back: the outage did not hit it")
	default:
	}
	if err := e.l.SetLinkUp(e.lk, true); err != nil {
		t.Fatal(err)
	}
	<-done
	e.logStats(t)
}
