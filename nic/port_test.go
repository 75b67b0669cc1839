package nic

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/pktgen"
)

const (
	echoPort  = 9000
	ioTimeout = 5 * time.Second
)

// openPort opens a port on queue of lk, steered by s (if not nil); it
// closes when t ends.
func openPort(t *testing.T, l *lab.Lab, lk lab.Link, s *bpf.Steering, queue int, cfg Config) *Port {
	t.Helper()
	cfg.Ifindex, cfg.Queue = lk.Index, queue
	if s != nil {
		cfg.Map = s
	}
	if cfg.ZeroCopy == ZeroCopyAuto {
		cfg.ZeroCopy = ZeroCopyOff // veth: skip the zero-copy attempt and its log line
	}
	var p *Port
	err := l.Engine.Do(func() (err error) {
		p, err = Open(cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("port close: %v", err)
		}
	})
	return p
}

// steer loads the steering program for the engine's addresses on lk and
// attaches it in native mode; it closes when t ends.
func steer(t *testing.T, l *lab.Lab, lk lab.Link) *bpf.Steering {
	t.Helper()
	s, err := newSteering(l, lk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newSteering(l *lab.Lab, lk lab.Link) (*bpf.Steering, error) {
	s, err := bpf.LoadSteering(bpf.SteeringOptions{Queues: max(lk.Queues, 1)})
	if err != nil {
		return nil, err
	}
	err = errors.Join(s.AddAddr(lk.EngineV4), s.AddAddr(lk.EngineV6),
		l.Engine.Do(func() error { return s.Attach(lk.Index, bpf.ModeNative) }))
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// echoer runs a port's receive loop: UDP frames to port echoPort are checked
// into seen (a copy) and echoed back through TX; other frames are released.
type echoer struct {
	p        *Port
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu     sync.Mutex
	seen   [][]byte    // copies of the UDP frames to echoPort, as received
	others chan []byte // copies of every other frame, while there is room
	err    error
}

func startEcho(p *Port) *echoer {
	e := &echoer{p: p, stop: make(chan struct{}), done: make(chan struct{}), others: make(chan []byte, 1024)}
	go e.run()
	return e
}

func (e *echoer) run() {
	defer close(e.done)
	descs := make([]Desc, 64)
	echo := make([]Desc, 0, 64)
	for {
		select {
		case <-e.stop:
			return
		default:
		}
		if _, err := e.p.Wait(20 * time.Millisecond); err != nil {
			e.fail(err)
			return
		}
		n, err := e.p.Receive(descs)
		if err != nil {
			e.fail(err)
			return
		}
		echo = echo[:0]
		var rel []Desc
		for _, d := range descs[:n] {
			f := e.p.Frame(d)
			u, ok := parseUDP(f)
			e.mu.Lock()
			if ok && u.dst.Port() == echoPort {
				e.seen = append(e.seen, bytes.Clone(f))
				echoInPlace(f)
				echo = append(echo, d)
			} else {
				select {
				case e.others <- bytes.Clone(f):
				default:
				}
				rel = append(rel, d)
			}
			e.mu.Unlock()
		}
		e.p.Release(rel)
		if len(echo) > 0 {
			sent, err := e.p.Transmit(echo)
			e.p.Release(echo[sent:])
			if err != nil {
				e.fail(err)
				return
			}
		}
	}
}

func (e *echoer) fail(err error) {
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
}

// Stop ends the loop (once) and returns the frames it echoed.
func (e *echoer) Stop(t *testing.T) [][]byte {
	t.Helper()
	e.stopOnce.Do(func() { close(e.stop) })
	<-e.done
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		t.Fatalf("echo loop: %v", e.err)
	}
	return e.seen
}

// clientConn opens a UDP socket on the client peer's address of the family
// of dst.
func clientConn(t *testing.T, l *lab.Lab, local netip.Addr, port int) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := l.Client.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, uint16(port))))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends payload from c to dst and waits for the same payload back
// from dst.
func roundTrip(c *net.UDPConn, dst netip.AddrPort, payload []byte) error {
	if _, err := c.WriteToUDPAddrPort(payload, dst); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return fmt.Errorf("no echo of %d bytes: %w", len(payload), err)
	}
	if from != dst || !bytes.Equal(buf[:n], payload) {
		return fmt.Errorf("echo from %v of %d bytes differs from the %d sent", from, n, len(payload))
	}
	return nil
}

// TestEchoIntact sends IPv4 and IPv6 UDP datagrams making 60- to 1514-byte
// frames from the kernel peer to the engine's addresses; the port must
// receive each exactly once and intact, and its echo (MAC, address and port
// swap through TX) must reach the peer's socket intact.
func TestEchoIntact(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	p := openPort(t, l, lk, steer(t, l, lk), 0, Config{})
	e := startEcho(p)
	defer e.Stop(t)

	rng := rand.New(rand.NewPCG(3, 4))
	type sent struct {
		src, dst netip.AddrPort
		payload  []byte
	}
	var all []sent
	for _, fam := range []struct {
		peer, engine netip.Addr
		sizes        []int // UDP payload sizes
	}{
		// IPv4: frame = 14 + 20 + 8 + payload: 60 .. 1514 bytes.
		{lk.PeerV4()[0], lk.EngineV4, []int{18, 19, 64, 213, 512, 1000, 1471, 1472}},
		// IPv6: frame = 14 + 40 + 8 + payload: 62 .. 1514 bytes.
		{lk.PeerV6()[0], lk.EngineV6, []int{0, 1, 64, 333, 1000, 1451, 1452}},
	} {
		c := clientConn(t, l, fam.peer, 0)
		dst := netip.AddrPortFrom(fam.engine, echoPort)
		for _, size := range fam.sizes {
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = byte(rng.Uint32())
			}
			if err := roundTrip(c, dst, payload); err != nil {
				t.Fatalf("%v: %v", dst, err)
			}
			all = append(all, sent{c.LocalAddr().(*net.UDPAddr).AddrPort(), dst, payload})
		}
	}
	seen := e.Stop(t)

	if len(seen) != len(all) {
		t.Fatalf("port saw %d frames for port %d, want exactly %d", len(seen), echoPort, len(all))
	}
	for i, s := range all {
		u, ok := parseUDP(seen[i])
		if !ok || u.dst != s.dst || u.src.Addr() != s.src.Addr().Unmap() || !bytes.Equal(u.payload, s.payload) {
			t.Errorf("frame %d (%d bytes) not as sent: %v -> %v, %d payload bytes", i, len(seen[i]), u.src, u.dst, len(u.payload))
		}
		if !bytes.Equal(seen[i][0:6], lk.MAC) || !bytes.Equal(seen[i][6:12], lk.PeerMAC) {
			t.Errorf("frame %d: MACs %x -> %x", i, seen[i][6:12], seen[i][0:6])
		}
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RxPackets < uint64(len(all)) || st.TxPackets != uint64(len(all)) {
		t.Errorf("stats rx %d tx %d, want rx >= %d and tx == %d", st.RxPackets, st.TxPackets, len(all), len(all))
	}
	if k := st.Kernel; k.RxDropped+k.RxInvalidDescs+k.TxInvalidDescs+k.RxRingFull+k.RxFillRingEmptyDescs != 0 {
		t.Errorf("kernel counted drops: %+v", k)
	}
}

// TestLinkDownUp takes the engine-side veth down: Transmit must fail with
// ErrLinkDown (ENETDOWN) and the frame stays queued; once the link is up
// again the same port sends it on its own, with no further Transmit, and
// echoes new traffic, without reopening.
func TestLinkDownUp(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	p := openPort(t, l, lk, steer(t, l, lk), 0, Config{})
	peer := netip.AddrPortFrom(lk.PeerV4()[0], 4242)
	c := clientConn(t, l, peer.Addr(), int(peer.Port()))

	if err := l.SetLinkUp(lk, false); err != nil {
		t.Fatal(err)
	}
	d := make([]Desc, 1)
	if p.Alloc(d) != 1 {
		t.Fatal("no frame to transmit")
	}
	payload := []byte("sent while the link was down")
	d[0].Len = uint32(buildUDP(p.Frame(d[0]), lk.MAC, lk.PeerMAC, netip.AddrPortFrom(lk.EngineV4, echoPort), peer, payload))
	n, err := p.Transmit(d)
	if !errors.Is(err, ErrLinkDown) || !errors.Is(err, unix.ENETDOWN) {
		t.Fatalf("Transmit with the link down: n=%d err=%v, want ErrLinkDown and ENETDOWN", n, err)
	}
	if n != 1 {
		t.Fatalf("Transmit placed %d descriptors, want 1 (kept on the ring)", n)
	}
	if st, _ := p.Stats(); st.LinkDown == 0 {
		t.Error("LinkDown counter not incremented")
	}

	if err := l.SetLinkUp(lk, true); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	m, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil || !bytes.Equal(buf[:m], payload) || from.Addr() != lk.EngineV4 {
		t.Fatalf("frame queued while down: got %q from %v, err %v", buf[:m], from, err)
	}
	if st, _ := p.Stats(); st.TxKickRetries == 0 {
		t.Error("the queued frame left without a retry kick counted")
	}

	e := startEcho(p)
	defer e.Stop(t)
	if err := roundTrip(c, netip.AddrPortFrom(lk.EngineV4, echoPort), []byte("after link up")); err != nil {
		t.Fatal(err)
	}
}

// TestTwoQueues opens a port on each queue of a two-queue veth; flows from
// many source ports spread over both, and each port receives its share, no
// frame twice and none lost.
func TestTwoQueues(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{Queues: 2})
	lk := l.ClientLink
	s := steer(t, l, lk)
	ports := []*Port{openPort(t, l, lk, s, 0, Config{}), openPort(t, l, lk, s, 1, Config{})}
	echoes := []*echoer{startEcho(ports[0]), startEcho(ports[1])}

	const flows, perFlow = 24, 4
	dst := netip.AddrPortFrom(lk.EngineV4, echoPort)
	for f := range flows {
		c := clientConn(t, l, lk.PeerV4()[0], 0)
		for i := range perFlow {
			if err := roundTrip(c, dst, fmt.Appendf(nil, "flow %d packet %d", f, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	total := 0
	for q, e := range echoes {
		seen := e.Stop(t)
		if len(seen) == 0 {
			t.Errorf("queue %d received none of %d flows", q, flows)
		}
		st, err := ports[q].Stats()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("queue %d: %d frames (rx counter %d)", q, len(seen), st.RxPackets)
		total += len(seen)
	}
	if total != flows*perFlow {
		t.Errorf("ports received %d frames in all, want exactly %d", total, flows*perFlow)
	}
}

// TestZeroCopyForcedOnVeth: veth has no zero-copy; forcing it must fail with
// ErrNotSupported and leave nothing bound, and ZeroCopyAuto must fall back to
// copy mode and say why.
func TestZeroCopyForcedOnVeth(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	err := l.Engine.Do(func() error {
		p, err := Open(Config{Ifindex: lk.Index, ZeroCopy: ZeroCopyForce})
		if err == nil {
			p.Close()
			return errors.New("forced zero-copy on veth succeeded")
		}
		if !errors.Is(err, ErrNotSupported) {
			return fmt.Errorf("forced zero-copy: %w, want ErrNotSupported", err)
		}
		p, err = Open(Config{Ifindex: lk.Index, ZeroCopy: ZeroCopyAuto, BindRetry: time.Millisecond})
		if err != nil {
			return fmt.Errorf("auto after a failed forced bind: %w", err)
		}
		defer p.Close()
		st, _ := p.Stats()
		if p.ZeroCopy() || p.FallbackReason() == "" || st.ZeroCopyFallback != 1 || st.BindRetries != 0 {
			return fmt.Errorf("auto mode: zerocopy=%v reason=%q fallbacks=%d retries=%d",
				p.ZeroCopy(), p.FallbackReason(), st.ZeroCopyFallback, st.BindRetries)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWaitWakeClose: Wait times out with nothing to do, returns early on
// Wake, and Close ends a Wait in progress with ErrClosed afterwards.
func TestWaitWakeClose(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	var p *Port
	if err := l.Engine.Do(func() (err error) {
		p, err = Open(Config{Ifindex: lk.Index, ZeroCopy: ZeroCopyOff})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if ready, err := p.Wait(time.Millisecond); ready || err != nil {
		t.Fatalf("Wait on an idle port = %v, %v", ready, err)
	}
	p.Wake()
	woken := make(chan error, 1)
	go func() {
		_, err := p.Wait(time.Hour)
		woken <- err
	}()
	select {
	case err := <-woken:
		if err != nil {
			t.Fatalf("Wait after Wake: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wake did not end an hour-long Wait within 10s")
	}
	res := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			_, err = p.Wait(-1)
		}
		res <- err
	}()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Wait across Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a Wait within 10s")
	}
	if _, err := p.Receive(make([]Desc, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive after Close: %v", err)
	}
	if _, err := p.Transmit(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Transmit after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestKernelTrafficAndNeighbours runs a port on the engine's addresses while
// the engine namespace's kernel owns a second address on the same veth:
// datagrams to the kernel's address reach a kernel socket (and not the
// port), while ARP requests and IPv6 neighbour solicitations for the
// engine's addresses reach the port.
func TestKernelTrafficAndNeighbours(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{EngineKernelAddrs: true})
	lk := l.ClientLink
	p := openPort(t, l, lk, steer(t, l, lk), 0, Config{})
	e := startEcho(p)
	defer e.Stop(t)

	const kernelPort = echoPort + 1
	for _, fam := range []struct{ peer, kernel, engine netip.Addr }{
		{lk.PeerV4()[0], lk.KernelV4, lk.EngineV4},
		{lk.PeerV6()[0], lk.KernelV6, lk.EngineV6},
	} {
		var ks *net.UDPConn
		if err := l.Engine.Do(func() (err error) {
			ks, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.kernel, kernelPort)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ks.Close()
		c := clientConn(t, l, fam.peer, 0)
		msg := []byte("for the kernel at " + fam.kernel.String())
		if _, err := c.WriteToUDPAddrPort(msg, netip.AddrPortFrom(fam.kernel, kernelPort)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		ks.SetReadDeadline(time.Now().Add(ioTimeout))
		n, _, err := ks.ReadFromUDPAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("kernel socket on %v: got %q, %v", fam.kernel, buf[:n], err)
		}
		// The port keeps serving the engine's address meanwhile.
		if err := roundTrip(c, netip.AddrPortFrom(fam.engine, echoPort), []byte("for the engine")); err != nil {
			t.Fatal(err)
		}
	}

	// Neighbour discovery for the engine's addresses, as a peer whose
	// neighbour entry expired would send it.
	sendRaw(t, l, lk, arpRequest(lk.PeerMAC, lk.PeerV4()[0], lk.EngineV4))
	sendRaw(t, l, lk, neighbourSolicitation(lk.PeerMAC, lk.PeerV6()[0], lk.EngineV6))
	var gotARP, gotNS bool
	timeout := time.After(ioTimeout)
	for !(gotARP && gotNS) {
		var f []byte
		select {
		case f = <-e.others:
		case <-timeout:
			t.Fatalf("port got ARP request: %v, neighbour solicitation: %v", gotARP, gotNS)
		}
		switch {
		case len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == etherARP &&
			netip.AddrFrom4([4]byte(f[38:42])) == lk.EngineV4:
			gotARP = true
		case len(f) >= 78 && binary.BigEndian.Uint16(f[12:]) == etherIPv6 && f[20] == protoICMP6 &&
			f[54] == 135 && netip.AddrFrom16([16]byte(f[62:78])) == lk.EngineV6:
			gotNS = true
		}
	}
	for _, f := range e.Stop(t) {
		if u, _ := parseUDP(f); u.dst.Port() == kernelPort {
			t.Errorf("port received a datagram for the kernel: %v -> %v", u.src, u.dst)
		}
	}
}

// sendRaw sends an Ethernet frame out of the client peer's veth.
func sendRaw(t *testing.T, l *lab.Lab, lk lab.Link, frame []byte) {
	t.Helper()
	err := l.Client.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: lk.PeerIndex, Halen: 6})
	})
	if err != nil {
		t.Fatalf("raw send: %v", err)
	}
}

// arpRequest is a broadcast ARP request (RFC 826) for target.
func arpRequest(mac net.HardwareAddr, sender, target netip.Addr) []byte {
	f := make([]byte, 60)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], etherARP)
	binary.BigEndian.PutUint16(f[14:], 1)         // Ethernet
	binary.BigEndian.PutUint16(f[16:], etherIPv4) // IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], 1) // request
	copy(f[22:28], mac)
	s4, t4 := sender.As4(), target.As4()
	copy(f[28:32], s4[:])
	copy(f[38:42], t4[:])
	return f
}

// neighbourSolicitation is an RFC 4861 section 4.3 solicitation for target,
// sent to its solicited-node multicast group.
func neighbourSolicitation(mac net.HardwareAddr, src, target netip.Addr) []byte {
	t16 := target.As16()
	group := [16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: t16[13], 14: t16[14], 15: t16[15]}
	f := make([]byte, 14+40+32)
	copy(f[0:6], []byte{0x33, 0x33, 0xff, t16[13], t16[14], t16[15]})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], etherIPv6)
	ip := f[14:54]
	ip[0], ip[6], ip[7] = 0x60, protoICMP6, 255
	binary.BigEndian.PutUint16(ip[4:], 32)
	s16 := src.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], group[:])
	icmp := f[54:]
	icmp[0] = 135
	copy(icmp[8:24], t16[:])
	icmp[24], icmp[25] = 1, 1 // source link-layer address option
	copy(icmp[26:32], mac)
	binary.BigEndian.PutUint16(icmp[2:], pktgen.Checksum(icmp, pktgen.Sum(ip[8:40], protoICMP6+32)))
	return f
}

// TestDeviceRemoved deletes the engine-side veth under an open port: Wait
// and Transmit must return errors (ENETDOWN, ENXIO) rather than hang or
// panic, and Close must still release everything.
func TestDeviceRemoved(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	s := steer(t, l, lk)
	var p *Port
	if err := l.Engine.Do(func() (err error) {
		p, err = Open(Config{Ifindex: lk.Index, Map: s, ZeroCopy: ZeroCopyOff})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	d := make([]Desc, 1)
	if p.Alloc(d) != 1 {
		t.Fatal("no frame")
	}
	if err := l.Engine.Do(func() error {
		nl, err := netlink.LinkByIndex(lk.Index)
		if err != nil {
			return err
		}
		return netlink.LinkDel(nl)
	}); err != nil {
		t.Fatal(err)
	}
	_, err := p.Wait(-1) // unbounded: must still notice
	if !errors.Is(err, unix.ENETDOWN) {
		t.Errorf("Wait after the device went away: %v, want ENETDOWN", err)
	}
	d[0].Len = uint32(buildUDP(p.Frame(d[0]), lk.MAC, lk.PeerMAC, netip.AddrPortFrom(lk.EngineV4, echoPort),
		netip.AddrPortFrom(lk.PeerV4()[0], echoPort), []byte("nowhere")))
	if _, err := p.Transmit(d); !errors.Is(err, unix.ENXIO) {
		t.Errorf("Transmit after the device went away: %v, want ENXIO", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close after the device went away: %v", err)
	}
}

// TestConcurrentTransmitters: several goroutines allocate, build and
// transmit frames on one port while another runs its receive loop, as the
// stack's writers and its RX goroutine do; every frame reaches the peer's
// socket once (run with -race: the port's two sides have their own locks).
// With 4096 frames (as many as the default fill ring has slots) the receive
// side must still leave frames to transmit.
func TestConcurrentTransmitters(t *testing.T) {
	for _, frames := range []int{defaultFrames, 4096} {
		t.Run(fmt.Sprintf("frames=%d", frames), func(t *testing.T) {
			testConcurrentTransmitters(t, Config{Frames: frames})
		})
	}
}

func testConcurrentTransmitters(t *testing.T, cfg Config) {
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	p := openPort(t, l, lk, steer(t, l, lk), 0, cfg)
	e := startEcho(p)
	defer e.Stop(t)

	peer := netip.AddrPortFrom(lk.PeerV4()[0], 5000)
	c := clientConn(t, l, peer.Addr(), int(peer.Port()))
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20) })
	if err != nil {
		t.Fatal(err)
	}

	const senders, perSender = 4, 250
	got := make(chan map[string]bool, 1)
	go func() {
		seen := map[string]bool{}
		buf := make([]byte, 2048)
		for len(seen) < senders*perSender {
			c.SetReadDeadline(time.Now().Add(ioTimeout))
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			seen[string(buf[:n])] = true
		}
		got <- seen
	}()

	errs := make(chan error, senders)
	for g := range senders {
		go func() {
			src := netip.AddrPortFrom(lk.EngineV4, uint16(echoPort+1+g))
			d := make([]Desc, 8)
			deadline := time.Now().Add(ioTimeout)
			for i := 0; i < perSender; {
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("sender %d stuck after %d frames", g, i)
					return
				}
				k := p.Alloc(d[:min(len(d), perSender-i)])
				for j := range d[:k] {
					d[j].Len = uint32(buildUDP(p.Frame(d[j]), lk.MAC, lk.PeerMAC, src, peer, fmt.Appendf(nil, "sender %d frame %d", g, i+j)))
				}
				sent, err := p.Transmit(d[:k])
				p.Release(d[sent:k])
				if err != nil && !errors.Is(err, ErrRingFull) {
					errs <- err
					return
				}
				i += sent
				if sent == 0 {
					p.Complete()
					runtime.Gosched()
				}
			}
			errs <- nil
		}()
	}
	for range senders {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := <-got
	if len(seen) != senders*perSender {
		t.Fatalf("peer received %d distinct frames, want %d", len(seen), senders*perSender)
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.TxPackets != senders*perSender {
		t.Errorf("TxPackets %d, want %d", st.TxPackets, senders*perSender)
	}
}
