package bpf

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/privtest"
)

func TestUDPOffset(t *testing.T) {
	var l lab.Link
	l.MAC, l.PeerMAC = net.HardwareAddr{2, 0, 0, 0, 1, 1}, net.HardwareAddr{2, 0, 0, 0, 1, 2}
	f4 := mustUDP(t, l, netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("198.18.1.1"), 64)
	f6 := mustUDP(t, l, netip.MustParseAddr("2001:2:0:1::2"), netip.MustParseAddr("2001:2:0:1::1"), 66)
	for _, c := range []struct {
		f    []byte
		off  int
		fail bool
	}{{f4, 34, false}, {f6, 54, false}, {f4[:40], 0, true}, {f6[:50], 0, true}, {make([]byte, 60), 0, true}} {
		off, port, err := udpOffset(c.f)
		if (err != nil) != c.fail || (!c.fail && (off != c.off || port != 1234)) {
			t.Errorf("len %d: got %d %d %v", len(c.f), off, port, err)
		}
	}
}

// TestGeneratorLive sends live frames from the client peer into the engine
// veth (steering attached, no socket): frames to the engine are counted
// exactly, and frames to the engine-ns kernel's address arrive at a kernel
// UDP socket (port 5678, mustUDP's) with valid checksums (the kernel drops bad ones) and spread
// over the configured source ports.
func TestGeneratorLive(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{EngineKernelAddrs: true})
	link := l.ClientLink
	var (
		s  *Steering
		kc [2]*net.UDPConn
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
		for i, a := range []netip.Addr{link.KernelV4, link.KernelV6} {
			if kc[i], err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 5678))); err != nil {
				return err
			}
			if err := kc[i].SetReadBuffer(4 << 20); err != nil {
				return err
			}
		}
		return nil
	})
	if s != nil {
		defer s.Close()
	}
	for _, c := range kc {
		if c != nil {
			defer c.Close()
		}
	}
	privtest.SkipIfNotSupported(t, err)

	const flows, toEngine, toKernel = 4, 1000, 100
	for i, fam := range []struct{ peer, engine, kernel netip.Addr }{
		{link.PeerV4()[0], link.EngineV4, link.KernelV4},
		{link.PeerV6()[0], link.EngineV6, link.KernelV6},
	} {
		before, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		// A loaded machine can defer the receiving veth's NAPI work until
		// its 256-frame ring overflows; the sender counts those drops in
		// tx_dropped, and every frame must be in one count or the other.
		var sentEngine, sentKernel, dropEngine, dropKernel uint64
		err = l.Client.Do(func() error {
			g, err := NewGenerator(GeneratorOptions{Flows: flows, Batch: 256})
			if err != nil {
				return err
			}
			defer g.Close()
			size := 64
			if fam.peer.Is6() {
				size = 66
			}
			d0 := txDropped(t, link.PeerIndex)
			if sentEngine, err = g.Run(context.Background(), mustUDP(t, link, fam.peer, fam.engine, size), link.PeerIndex, toEngine); err != nil {
				return err
			}
			d1 := txDropped(t, link.PeerIndex)
			sentKernel, err = g.Run(context.Background(), mustUDP(t, link, fam.peer, fam.kernel, size), link.PeerIndex, toKernel)
			dropEngine, dropKernel = d1-d0, txDropped(t, link.PeerIndex)-d1
			return err
		})
		privtest.SkipIfForbidden(t, err)
		privtest.SkipIfNotSupported(t, err)
		if sentEngine != toEngine || sentKernel != toKernel {
			t.Errorf("%v: generator ran %d and %d times, want %d and %d", fam.peer, sentEngine, sentKernel, toEngine, toKernel)
		}
		after, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if d := delta(before, after); d.NoSocket+dropEngine != toEngine || d.Passed+dropKernel < toKernel || d.Redirected != 0 || d.Malformed != 0 {
			t.Errorf("%v: steering counters moved %+v with %d+%d dropped at the ring, want %d no-socket, >= %d passed",
				fam.peer, d, dropEngine, dropKernel, toEngine, toKernel)
		}
		if dropEngine+dropKernel > 0 {
			t.Logf("%v: %d+%d frames dropped at the veth ring", fam.peer, dropEngine, dropKernel)
		}
		ports := map[uint16]int{}
		kc[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2048)
		for range toKernel - dropKernel {
			_, from, err := kc[i].ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("%v: after %d datagrams: %v", fam.peer, len(ports), err)
			}
			ports[from.Port()]++
		}
		for p := range ports {
			if p < 1234 || p >= 1234+flows {
				t.Errorf("%v: source port %d outside 1234..%d", fam.peer, p, 1234+flows-1)
			}
		}
		if len(ports) != flows {
			t.Errorf("%v: %d source ports seen (%v), want %d", fam.peer, len(ports), ports, flows)
		}
	}
}

// txDropped reads the tx_dropped counter of ifindex in the calling thread's
// namespace.
func txDropped(t *testing.T, ifindex int) uint64 {
	t.Helper()
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.TxDropped
}

func TestGeneratorCancelAndClose(t *testing.T) {
	privtest.RequireRoot(t)
	g, err := NewGenerator(GeneratorOptions{})
	privtest.SkipIfNotSupported(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n, err := g.Run(ctx, make([]byte, 60), 1, 10); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Run: %d, %v", n, err)
	}
	for _, c := range []struct {
		frame   []byte
		ifindex int
	}{{make([]byte, 13), 1}, {make([]byte, MaxFrame+1), 1}, {make([]byte, 60), 0}} {
		if _, err := g.Run(context.Background(), c.frame, c.ifindex, 1); err == nil || errors.Is(err, ErrNotSupported) {
			t.Errorf("%d-byte frame on ifindex %d: %v, want a plain error", len(c.frame), c.ifindex, err)
		}
	}
	if _, err := NewGenerator(GeneratorOptions{Flows: -1}); err == nil {
		t.Error("negative flows accepted")
	}
	if g, err := NewGenerator(GeneratorOptions{Flows: 2}); err != nil {
		t.Fatal(err)
	} else {
		if _, err := g.Run(context.Background(), make([]byte, 60), 1, 1); err == nil {
			t.Error("flows over a non-UDP frame accepted")
		}
		g.Close()
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Run(context.Background(), make([]byte, 60), 1, 1); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}

// TestGeneratorBudget runs the program past its budget directly, as the
// kernel does when it re-runs an interrupted batch: only the budget is
// sent, the rest dropped.
func TestGeneratorBudget(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	link := l.ClientLink
	var s *Steering
	err := l.Engine.Do(func() error {
		var err error
		if s, err = LoadSteering(SteeringOptions{}); err != nil {
			return err
		}
		if err := s.Attach(link.Index, ModeNative); err != nil {
			return err
		}
		return s.AddAddr(link.EngineV4)
	})
	if s != nil {
		defer s.Close()
	}
	privtest.SkipIfNotSupported(t, err)
	g, err := NewGenerator(GeneratorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	frame := mustUDP(t, link, link.PeerV4()[0], link.EngineV4, 64)
	before, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var runs uint64
	err = l.Client.Do(func() error {
		start, err := g.runs()
		if err != nil {
			return err
		}
		if err := g.objs.GenCfg.Update(uint32(0), genGenConfig{Limit: start + 10}, ebpf.UpdateAny); err != nil {
			return err
		}
		if _, err := g.objs.XdpnetGen.Run(&ebpf.RunOptions{
			Data: frame, Repeat: 50, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(link.PeerIndex)},
		}); err != nil {
			return err
		}
		end, err := g.runs()
		runs = end - start
		return err
	})
	privtest.SkipIfForbidden(t, err)
	privtest.SkipIfNotSupported(t, err)
	after, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if d := delta(before, after); runs < 50 || d.NoSocket != 10 {
		t.Errorf("%d runs with a budget of 10 delivered %d frames", runs, d.NoSocket)
	}
}
