package bpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asavie/xdp"
	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/internal/privtest"
)

// XDP actions (enum xdp_action).
const (
	xdpPass     = 2
	xdpRedirect = 4
)

// verdictCase is a frame and what steering must do with it.
type verdictCase struct {
	name   string
	frame  []byte
	engine bool // addressed to the engine (else passed, or malformed)
	bad    bool // malformed
}

func mustUDP(t testing.TB, l lab.Link, src, dst netip.Addr, size int) []byte {
	t.Helper()
	f, err := pktgen.BuildUDP(pktgen.UDPFrame{
		SrcMAC: l.PeerMAC, DstMAC: l.MAC,
		Src: netip.AddrPortFrom(src, 1234), Dst: netip.AddrPortFrom(dst, 5678), Size: size,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// verdictCases are frames a client peer could send on l.
func verdictCases(t *testing.T, l lab.Link) []verdictCase {
	peer4, peer6 := l.PeerV4()[0], l.PeerV6()[0]
	udp4 := mustUDP(t, l, peer4, l.EngineV4, 64)
	ihl4 := append([]byte(nil), udp4...)
	ihl4[14] = 4<<4 | 4
	v6bad := mustUDP(t, l, peer6, l.EngineV6, 100)
	v6bad[14] = 4 << 4
	mapped := mustUDP(t, l, peer6, l.EngineV6, 100)
	m := netip.AddrFrom16(netip.MustParseAddr("::ffff:198.18.1.1").As16()).As16()
	copy(mapped[38:54], m[:])
	mld := pktgen.NeighborSolicitation(l.PeerMAC, peer6, l.EngineV6)
	mld[54] = 143 // an MLDv2 report to the same group: not a solicitation
	nsShort := pktgen.NeighborSolicitation(l.PeerMAC, peer6, l.EngineV6)[:14+40+10]
	other := make([]byte, 60)
	copy(other[12:], []byte{0x88, 0xb5}) // local experimental ethertype
	return []verdictCase{
		{name: "udp4-engine", frame: udp4, engine: true},
		{name: "udp4-engine-1518", frame: mustUDP(t, l, peer4, l.EngineV4, 1518), engine: true},
		{name: "udp6-engine", frame: mustUDP(t, l, peer6, l.EngineV6, 66), engine: true},
		{name: "udp4-other", frame: mustUDP(t, l, peer4, peer4, 64)},
		{name: "udp6-other", frame: mustUDP(t, l, peer6, peer6, 66)},
		{name: "arp-engine", frame: pktgen.ARPRequest(l.PeerMAC, peer4, l.EngineV4), engine: true},
		{name: "arp-other", frame: pktgen.ARPRequest(l.PeerMAC, peer4, peer4)},
		{name: "ns-engine", frame: pktgen.NeighborSolicitation(l.PeerMAC, peer6, l.EngineV6), engine: true},
		{name: "ns-other", frame: pktgen.NeighborSolicitation(l.PeerMAC, peer6, peer6)},
		{name: "mld-report", frame: mld},
		{name: "v4-mapped-in-ipv6", frame: mapped},
		{name: "other-ethertype", frame: other},
		{name: "ipv4-truncated", frame: udp4[:14+19], bad: true},
		{name: "ipv4-ihl-4", frame: ihl4, bad: true},
		{name: "arp-truncated", frame: pktgen.ARPRequest(l.PeerMAC, peer4, l.EngineV4)[:14+27], bad: true},
		{name: "ipv6-wrong-version", frame: v6bad, bad: true},
		{name: "ns-truncated", frame: nsShort, bad: true},
	}
}

// runSteer runs the steering program once on frame as if it arrived on
// queue 0 of ifindex, in the calling thread's netns.
func runSteer(s *Steering, frame []byte, ifindex int) (uint32, error) {
	return s.objs.XdpnetSteer.Run(&ebpf.RunOptions{
		Data:    frame,
		Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)},
	})
}

// TestSteeringVerdicts runs the program on crafted frames through
// BPF_PROG_RUN, first without and then with an AF_XDP socket on the queue,
// and checks every verdict and that the counters move by exactly one.
func TestSteeringVerdicts(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	link := l.ClientLink
	err := l.Engine.Do(func() error {
		s, err := LoadSteering(SteeringOptions{Queues: 4})
		if err != nil {
			return err
		}
		defer s.Close()
		for _, a := range []netip.Addr{link.EngineV4, link.EngineV6} {
			if err := s.AddAddr(a); err != nil {
				return err
			}
		}
		check := func(withSocket bool) {
			for _, c := range verdictCases(t, link) {
				before, err := s.Counters()
				if err != nil {
					t.Fatal(err)
				}
				got, err := runSteer(s, c.frame, link.Index)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				after, err := s.Counters()
				if err != nil {
					t.Fatal(err)
				}
				want, wantDelta := uint32(xdpPass), Counters{Passed: 1}
				switch {
				case c.bad:
					wantDelta = Counters{Malformed: 1}
				case c.engine && withSocket:
					want, wantDelta = xdpRedirect, Counters{Redirected: 1}
				case c.engine:
					wantDelta = Counters{NoSocket: 1}
				}
				if got != want {
					t.Errorf("socket=%v %s: verdict %d, want %d", withSocket, c.name, got, want)
				}
				if d := delta(before, after); d != wantDelta {
					t.Errorf("socket=%v %s: counters moved %+v, want %+v", withSocket, c.name, d, wantDelta)
				}
			}
		}
		check(false)
		xsk, err := newXSK(link.Index, 0)
		if err != nil {
			return err
		}
		defer xsk.Close()
		if err := s.SetSocket(0, xsk.FD()); err != nil {
			return err
		}
		check(true)
		// Out-of-range queues are refused before touching the map.
		if s.SetSocket(4, xsk.FD()) == nil || s.DeleteSocket(-1) == nil {
			t.Error("queue outside the XSKMAP accepted")
		}
		if err := s.DeleteSocket(0); err != nil {
			return err
		}
		if err := s.DeleteSocket(0); err != nil {
			t.Errorf("deleting an empty slot: %v", err)
		}
		check(false)
		return nil
	})
	privtest.SkipIfNotSupported(t, err)
}

func delta(a, b Counters) Counters {
	return Counters{b.Redirected - a.Redirected, b.Passed - a.Passed, b.NoSocket - a.NoSocket, b.Malformed - a.Malformed}
}

// newXSK binds a small AF_XDP socket to queue of ifindex with its fill ring
// stocked, in the calling thread's netns.
func newXSK(ifindex, queue int) (*xdp.Socket, error) {
	xsk, err := xdp.NewSocket(ifindex, queue, &xdp.SocketOptions{
		NumFrames: 64, FrameSize: 2048, FillRingNumDescs: 32, CompletionRingNumDescs: 32,
		RxRingNumDescs: 32, TxRingNumDescs: 32,
	})
	if err != nil {
		return nil, fmt.Errorf("xsk on ifindex %d queue %d: %w", ifindex, queue, err)
	}
	xsk.Fill(xsk.GetDescs(32))
	return xsk, nil
}

// TestSteeringAddrUpdates changes the address set while the program is
// loaded: the very next frame follows the change.
func TestSteeringAddrUpdates(t *testing.T) {
	privtest.RequireRoot(t)
	s, err := LoadSteering(SteeringOptions{MaxAddrs: 2})
	privtest.SkipIfNotSupported(t, err)
	defer s.Close()
	var l lab.Link // only MACs and addresses matter here
	l.MAC, l.PeerMAC = net.HardwareAddr{2, 0, 0, 0, 1, 1}, net.HardwareAddr{2, 0, 0, 0, 1, 2}
	l.EngineV4, l.EngineV6 = netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("2001:2:0:1::1")
	l.PeerAddrs = []netip.Addr{netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("2001:2:0:1::2")}
	f4 := mustUDP(t, l, l.PeerAddrs[0], l.EngineV4, 64)
	f6 := mustUDP(t, l, l.PeerAddrs[1], l.EngineV6, 66)
	noSocket := func(f []byte) bool {
		t.Helper()
		before, _ := s.Counters()
		if _, err := runSteer(s, f, 0); err != nil {
			t.Fatal(err)
		}
		after, _ := s.Counters()
		return delta(before, after).NoSocket == 1
	}
	if noSocket(f4) || noSocket(f6) {
		t.Fatal("steered before any address was added")
	}
	for _, a := range []netip.Addr{l.EngineV4, netip.AddrFrom16(l.EngineV4.As16()), l.EngineV6} {
		if err := s.AddAddr(a); err != nil { // the mapped form is the same key
			t.Fatal(err)
		}
	}
	if !noSocket(f4) || !noSocket(f6) {
		t.Fatal("not steered after AddAddr")
	}
	if got, err := s.Addrs(); err != nil || len(got) != 2 {
		t.Fatalf("Addrs: %v, %v", got, err)
	}
	if err := s.AddAddr(netip.MustParseAddr("198.18.1.3")); err == nil {
		t.Error("address beyond MaxAddrs accepted")
	}
	if err := s.RemoveAddr(l.EngineV4); err != nil {
		t.Fatal(err)
	}
	if noSocket(f4) || !noSocket(f6) {
		t.Fatal("RemoveAddr of the IPv4 address did not take effect alone")
	}
	if err := s.RemoveAddr(l.EngineV4); err != nil {
		t.Errorf("removing an absent address: %v", err)
	}
	// A zone is ignored: the map serves one interface.
	if err := s.AddAddr(l.EngineV6.WithZone("veth-client")); err != nil {
		t.Errorf("zoned address: %v", err)
	}
	if err := s.AddAddr(netip.Addr{}); err == nil {
		t.Error("invalid address accepted")
	}
}

// TestSteeringLive attaches the program to the engine's veth and sends real
// traffic from the client peer: UDP, ARP and a neighbour solicitation for the
// engine reach the AF_XDP socket; UDP to the engine-ns kernel's own address
// (which needs real ARP and neighbour discovery through the program) still
// reaches a kernel socket.
func TestSteeringLive(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{EngineKernelAddrs: true})
	link := l.ClientLink
	var (
		s   *Steering
		xsk *xdp.Socket
		kc  [2]*net.UDPConn
	)
	err := l.Engine.Do(func() error {
		var err error
		if s, err = LoadSteering(SteeringOptions{}); err != nil {
			return err
		}
		if err := s.Attach(link.Index, ModeNative); err != nil {
			return err
		}
		for _, a := range []netip.Addr{link.EngineV4, link.EngineV6} {
			if err := s.AddAddr(a); err != nil {
				return err
			}
		}
		if xsk, err = newXSK(link.Index, 0); err != nil {
			return err
		}
		if err := s.SetSocket(0, xsk.FD()); err != nil {
			return err
		}
		for i, a := range []netip.Addr{link.KernelV4, link.KernelV6} {
			if kc[i], err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 9000))); err != nil {
				return err
			}
		}
		return nil
	})
	if s != nil {
		defer s.Close()
	}
	if xsk != nil {
		defer xsk.Close()
	}
	for _, c := range kc {
		if c != nil {
			defer c.Close()
		}
	}
	privtest.SkipIfNotSupported(t, err)
	if s.Mode() != ModeNative {
		t.Errorf("mode %v, want native", s.Mode())
	}

	err = l.Client.Do(func() error {
		for _, dst := range []netip.Addr{link.EngineV4, link.EngineV6, link.KernelV4, link.KernelV6} {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9000)))
			if err != nil {
				return err
			}
			_, err = c.Write([]byte("steer"))
			c.Close()
			if err != nil {
				return err
			}
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: link.PeerIndex, Halen: 6}
		for _, f := range [][]byte{
			pktgen.ARPRequest(link.PeerMAC, link.PeerV4()[0], link.EngineV4),
			pktgen.NeighborSolicitation(link.PeerMAC, link.PeerV6()[0], link.EngineV6),
		} {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for i, c := range kc {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		if n, _, err := c.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "steer" {
			t.Errorf("kernel socket %d: %q, %v", i, buf[:n], err)
		}
	}
	// Four frames for the engine: two UDP, one ARP request, one NS.
	var kinds []string
	for deadline := time.Now().Add(5 * time.Second); len(kinds) < 4 && time.Now().Before(deadline); {
		n, _, err := xsk.Poll(100)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range xsk.Receive(n) {
			kinds = append(kinds, frameKind(xsk.GetFrame(d)))
		}
	}
	if got := strings.Join(sorted(kinds), ","); got != "arp,icmpv6-135,udp4,udp6" {
		t.Errorf("AF_XDP socket got %q, want arp,icmpv6-135,udp4,udp6", got)
	}
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Redirected != 4 || c.NoSocket != 0 || c.Malformed != 0 || c.Passed < 4 {
		t.Errorf("counters %+v: want 4 redirected, at least 4 passed (2 UDP, ARP, NS), none else", c)
	}
}

func frameKind(f []byte) string {
	switch {
	case len(f) < 14:
		return "short"
	case f[12] == 0x08 && f[13] == 0x06:
		return "arp"
	case f[12] == 0x08 && f[13] == 0x00 && len(f) > 23 && f[23] == 17:
		return "udp4"
	case f[12] == 0x86 && f[13] == 0xdd && len(f) > 54 && f[20] == 17:
		return "udp6"
	case f[12] == 0x86 && f[13] == 0xdd && len(f) > 54 && f[20] == 58:
		return "icmpv6-" + strconv.Itoa(int(f[54]))
	}
	return fmt.Sprintf("%x", f[12:14])
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// xdpState returns the XDP program ID attached to ifindex in ns (0: none).
func xdpState(t *testing.T, ns *lab.NS, ifindex int) uint32 {
	t.Helper()
	var id uint32
	err := ns.Do(func() error {
		nl, err := netlink.LinkByIndex(ifindex)
		if err != nil {
			return err
		}
		if x := nl.Attrs().Xdp; x != nil && x.Attached {
			id = x.ProgId
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// objectsGone waits (bounded) until the program and maps with these IDs no
// longer exist: the kernel frees them after an RCU grace period once the
// last reference is dropped.
func objectsGone(prog ebpf.ProgramID, maps []ebpf.MapID) bool {
	for range 200 {
		left := 0
		if p, err := ebpf.NewProgramFromID(prog); err == nil {
			p.Close()
			left++
		}
		for _, id := range maps {
			if m, err := ebpf.NewMapFromID(id); err == nil {
				m.Close()
				left++
			}
		}
		if left == 0 {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// objectIDs returns the IDs of s's program and maps.
func objectIDs(s *Steering) (ebpf.ProgramID, []ebpf.MapID, error) {
	info, err := s.objs.XdpnetSteer.Info()
	if err != nil {
		return 0, nil, err
	}
	prog, _ := info.ID()
	var maps []ebpf.MapID
	for _, m := range []*ebpf.Map{s.objs.Xsks, s.objs.Addrs, s.objs.Counters} {
		mi, err := m.Info()
		if err != nil {
			return 0, nil, err
		}
		id, _ := mi.ID()
		maps = append(maps, id)
	}
	return prog, maps, nil
}

func TestAttachModesAndClose(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	idx := l.ClientLink.Index
	for _, mode := range []Mode{ModeAuto, ModeNative, ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			var (
				s      *Steering
				progID ebpf.ProgramID
				mapIDs []ebpf.MapID
			)
			err := l.Engine.Do(func() error {
				var err error
				if s, err = LoadSteering(SteeringOptions{}); err != nil {
					return err
				}
				if err := s.Attach(idx, mode); err != nil {
					return err
				}
				if progID, mapIDs, err = objectIDs(s); err != nil {
					return err
				}
				if s.Attach(idx, mode) == nil {
					t.Error("second Attach of one Steering succeeded")
				}
				// A second program cannot take the interface over.
				s2, err := LoadSteering(SteeringOptions{})
				if err != nil {
					return err
				}
				defer s2.Close()
				if s2.Attach(idx, ModeAuto) == nil {
					t.Error("a second program attached over the first")
				}
				return nil
			})
			privtest.SkipIfNotSupported(t, err)
			wantMode := mode
			if mode == ModeAuto {
				wantMode = ModeNative // veth has native XDP
			}
			if s.Mode() != wantMode {
				t.Errorf("mode %v, want %v", s.Mode(), wantMode)
			}
			if got := xdpState(t, l.Engine, idx); got != uint32(progID) {
				t.Errorf("interface runs program %d, want %d", got, progID)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if got := xdpState(t, l.Engine, idx); got != 0 {
				t.Errorf("program %d still attached after Close", got)
			}
			if !objectsGone(progID, mapIDs) {
				t.Errorf("program %d or maps %v still exist after Close", progID, mapIDs)
			}
			if s.Attach(idx, mode) == nil || s.AddAddr(netip.MustParseAddr("198.18.1.1")) == nil {
				t.Error("closed Steering still usable")
			}
		})
	}
}

const childEnv = "XDPNET_BPF_ATTACH_CHILD"

// TestKilledProcessLeavesNoProgram runs a child process that attaches the
// steering program and blocks; after SIGKILL the interface has no program,
// and the program and its maps are gone.
func TestKilledProcessLeavesNoProgram(t *testing.T) {
	t.Parallel() // its own lab namespaces
	if spec := os.Getenv(childEnv); spec != "" {
		attachChild(spec)
		return
	}
	l := labtest.New(t, lab.Options{})
	idx := l.ClientLink.Index
	child := exec.Command(os.Args[0], "-test.run=^TestKilledProcessLeavesNoProgram$", "-test.timeout=60s")
	child.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", childEnv, l.Engine.Path(), idx))
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		progID uint32
		maps   [3]ebpf.MapID
	)
	buf := make([]byte, 256)
	n, _ := out.Read(buf)
	if _, err := fmt.Sscanf(string(buf[:n]), "attached %d maps %d %d %d", &progID, &maps[0], &maps[1], &maps[2]); err != nil {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("child said %q: %v", buf[:n], err)
	}
	if got := xdpState(t, l.Engine, idx); got != progID {
		t.Fatalf("child's program %d not attached (found %d)", progID, got)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	if got := xdpState(t, l.Engine, idx); got != 0 {
		t.Errorf("program %d still attached after the process was killed", got)
	}
	if !objectsGone(ebpf.ProgramID(progID), maps[:]) {
		t.Errorf("program %d or maps %v outlived their process", progID, maps)
	}
}

func attachChild(spec string) {
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	path, idxStr, _ := strings.Cut(spec, ":")
	idx, err := strconv.Atoi(idxStr)
	if err != nil {
		fail(err)
	}
	runtime.LockOSThread()
	h, err := netns.GetFromPath(path)
	if err != nil {
		fail(err)
	}
	if err := netns.Set(h); err != nil {
		fail(err)
	}
	s, err := LoadSteering(SteeringOptions{})
	if err != nil {
		fail(err)
	}
	if err := s.Attach(idx, ModeNative); err != nil {
		fail(err)
	}
	prog, maps, err := objectIDs(s)
	if err != nil {
		fail(err)
	}
	fmt.Printf("attached %d maps %d %d %d\n", prog, maps[0], maps[1], maps[2])
	time.Sleep(60 * time.Second) // killed long before
	os.Exit(1)
}

func TestAttachDrop(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	idx := l.ClientLink.Index
	var sink interface{ Close() error }
	err := l.Engine.Do(func() error {
		var err error
		sink, err = AttachDrop(idx, ModeAuto)
		return err
	})
	privtest.SkipIfNotSupported(t, err)
	if xdpState(t, l.Engine, idx) == 0 {
		t.Fatal("drop program not attached")
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if got := xdpState(t, l.Engine, idx); got != 0 {
		t.Errorf("program %d still attached after Close", got)
	}
}

// TestNativeUnsupported uses the loopback device, which has no native XDP:
// a forced native attach fails with ErrNotSupported, ModeAuto falls back to
// generic mode.
func TestNativeUnsupported(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	err := l.Engine.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		idx := lo.Attrs().Index
		native, err := LoadSteering(SteeringOptions{})
		if err != nil {
			return err
		}
		defer native.Close()
		if err := native.Attach(idx, ModeNative); !errors.Is(err, ErrNotSupported) {
			t.Errorf("native attach on lo: %v, want ErrNotSupported", err)
		}
		auto, err := LoadSteering(SteeringOptions{})
		if err != nil {
			return err
		}
		defer auto.Close()
		if err := auto.Attach(idx, ModeAuto); err != nil {
			return err
		}
		if auto.Mode() != ModeGeneric {
			t.Errorf("auto attach on lo: mode %v, want generic", auto.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSteeringQueueCounters runs frames through BPF_PROG_RUN on each queue
// of a two-queue veth with a program sized for one: queue 0's frames are
// counted under queue 0, queue 1's under the other queues, and Counters
// adds both.
func TestSteeringQueueCounters(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{Queues: 2})
	link := l.ClientLink
	err := l.Engine.Do(func() error {
		s, err := LoadSteering(SteeringOptions{Queues: 1})
		if err != nil {
			return err
		}
		defer s.Close()
		bad := mustUDP(t, link, link.PeerV4()[0], link.EngineV4, 64)[:14+19]
		passed := mustUDP(t, link, link.PeerV4()[0], link.PeerV4()[0], 64)
		for _, c := range []struct {
			queue  uint32
			frame  []byte
			copies int
		}{{0, bad, 3}, {1, bad, 2}, {0, passed, 1}, {1, passed, 4}} {
			for range c.copies {
				if _, err := s.objs.XdpnetSteer.Run(&ebpf.RunOptions{
					Data:    c.frame,
					Context: xdpMD{DataEnd: uint32(len(c.frame)), IngressIfindex: uint32(link.Index), RxQueueIndex: c.queue},
				}); err != nil {
					return fmt.Errorf("queue %d: %w", c.queue, err)
				}
			}
		}
		qs, other, err := s.QueueCounters()
		if err != nil {
			return err
		}
		if len(qs) != 1 || qs[0] != (Counters{Malformed: 3, Passed: 1}) || other != (Counters{Malformed: 2, Passed: 4}) {
			t.Errorf("queue counters %+v, other queues %+v; want [{Malformed 3 Passed 1}], {Malformed 2 Passed 4}", qs, other)
		}
		if all, err := s.Counters(); err != nil || all != (Counters{Malformed: 5, Passed: 5}) {
			t.Errorf("Counters: %+v, %v; want 5 malformed, 5 passed", all, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
