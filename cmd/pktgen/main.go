package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/nic"
)

type options struct {
	lab      bool
	sink     string
	netns    string
	dev      string
	dst, src string
	dstMAC   string
	mode     string
	queue    int
	size     int
	flows    int
	rate     float64
	count    uint64
	duration time.Duration
	quiet    bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("pktgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.lab, "lab", false, "build a lab and send from its client peer into the engine veth")
	fs.StringVar(&o.sink, "sink", "xdp-drop", "with -lab: what receives on the engine veth: xdp-drop or gro (kernel stack)")
	fs.StringVar(&o.netns, "netns", "", "named network namespace to send from (default: the current one)")
	fs.StringVar(&o.dev, "dev", "", "interface to send out of (with -lab: the client peer)")
	fs.StringVar(&o.dst, "dst", "", "destination ADDR or ADDR:PORT (port 9 if omitted; with -lab default: the engine's .1)")
	fs.StringVar(&o.src, "src", "", "source ADDR or ADDR:PORT (default: the interface's address, port 10000)")
	fs.StringVar(&o.dstMAC, "dst-mac", "", "destination MAC (default: the neighbour entry of the next hop)")
	fs.StringVar(&o.mode, "mode", "live", "live (XDP live frames) or afxdp (AF_XDP TX through nic.Port)")
	fs.IntVar(&o.queue, "queue", 0, "afxdp: the TX queue to bind")
	fs.IntVar(&o.size, "size", 64, "frame size including the FCS, 64..1518")
	fs.IntVar(&o.flows, "flows", 1, "UDP source ports to spread the frames over")
	fs.Float64Var(&o.rate, "rate", 0, "frames per second (0: as fast as possible)")
	fs.Uint64Var(&o.count, "count", 0, "frames to send (0: no count bound)")
	fs.DurationVar(&o.duration, "duration", 0, "how long to send (0: no time bound but the 1 h cap; needs -count)")
	fs.BoolVar(&o.quiet, "quiet", false, "no per-second progress line")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pktgen: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := generate(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func (o *options) check() error {
	switch {
	case o.count == 0 && o.duration == 0:
		return fmt.Errorf("pktgen: refusing an unbounded run: give -count and/or -duration")
	case o.duration < 0 || o.duration > pktgen.MaxDuration:
		return fmt.Errorf("pktgen: -duration %v out of range (0, %v]", o.duration, pktgen.MaxDuration)
	case o.mode != "live" && o.mode != "afxdp":
		return fmt.Errorf("pktgen: -mode %q: want live or afxdp", o.mode)
	case o.lab && o.netns != "":
		return fmt.Errorf("pktgen: -lab and -netns exclude each other")
	case o.lab && o.sink != "xdp-drop" && o.sink != "gro":
		return fmt.Errorf("pktgen: -sink %q: want xdp-drop or gro", o.sink)
	case !o.lab && (o.dev == "" || o.dst == ""):
		return fmt.Errorf("pktgen: give -dev and -dst (or -lab)")
	case o.size < pktgen.MinSize || o.size > pktgen.MaxSize:
		return fmt.Errorf("pktgen: -size %d out of range [%d, %d] (FCS included)", o.size, pktgen.MinSize, pktgen.MaxSize)
	case o.flows < 1 || o.flows > 1<<16:
		return fmt.Errorf("pktgen: -flows %d out of range [1, 65536]", o.flows)
	case o.rate < 0:
		return fmt.Errorf("pktgen: negative -rate")
	}
	// Refuse bad addresses early, before building anything.
	for _, a := range []string{o.dst, o.src} {
		if a == "" {
			continue
		}
		ap, err := parseAddrPort(a, 9)
		if err != nil {
			return err
		}
		if err := pktgen.CheckLabAddr(ap.Addr()); err != nil {
			return err
		}
		if ap.Addr().Is6() && o.size < pktgen.MinSizeFor(true) {
			return fmt.Errorf("pktgen: IPv6 UDP needs -size %d or more", pktgen.MinSizeFor(true))
		}
	}
	return nil
}

// parseAddrPort accepts ADDR:PORT, [V6]:PORT or a bare ADDR (port def).
func parseAddrPort(s string, def uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("pktgen: address %q: want ADDR or ADDR:PORT", s)
	}
	return netip.AddrPortFrom(a.Unmap(), def), nil
}

// generate sets the sending namespace up and runs body on a thread in it.
func generate(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if !o.lab {
		return inNetns(o.netns, func() error { return send(ctx, o, stdout, stderr) })
	}
	l, err := lab.New(lab.Options{EngineGRO: o.sink == "gro"})
	if err != nil {
		return err
	}
	defer l.Close()
	if o.sink == "xdp-drop" {
		var sink io.Closer
		if err := l.Engine.Do(func() error {
			sink, err = bpf.AttachDrop(l.ClientLink.Index, bpf.ModeNative)
			return err
		}); err != nil {
			return err
		}
		defer sink.Close()
	}
	o.dev = l.ClientLink.PeerName
	if o.dst == "" {
		o.dst = l.ClientLink.EngineV4.String()
	}
	fmt.Fprintf(stderr, "pktgen: lab %s -> %s (sink %s)\n", l.Client.Name, l.Engine.Name, o.sink)
	return l.Client.Do(func() error { return send(ctx, o, stdout, stderr) })
}

// inNetns runs fn on a locked thread in the named namespace ("" for the
// current one).
func inNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if name == "" {
		return fn()
	}
	target, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("pktgen: netns %s: %w", name, err)
	}
	defer target.Close()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("pktgen: enter netns %s: %w", name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The process is about to exit; the thread stays locked.
		return errors.Join(ferr, err)
	}
	return ferr
}

// send runs on a thread in the sending namespace.
func send(ctx context.Context, o options, stdout, stderr io.Writer) error {
	link, err := netlink.LinkByName(o.dev)
	if err != nil {
		return fmt.Errorf("pktgen: interface %s: %w", o.dev, err)
	}
	ifindex := link.Attrs().Index
	dst, err := parseAddrPort(o.dst, 9)
	if err != nil {
		return err
	}
	src, err := source(link, o.src, dst.Addr())
	if err != nil {
		return err
	}
	dstMAC, err := nextHopMAC(link, o.dstMAC, dst.Addr())
	if err != nil {
		return err
	}
	if dst.Addr().Is6() && o.size < pktgen.MinSizeFor(true) {
		return fmt.Errorf("pktgen: IPv6 UDP needs -size %d or more", pktgen.MinSizeFor(true))
	}
	spec := pktgen.UDPFrame{SrcMAC: link.Attrs().HardwareAddr, DstMAC: dstMAC, Src: src, Dst: dst, Size: o.size}
	frame, err := pktgen.BuildUDP(spec)
	if err != nil {
		return err
	}

	cfg := pktgen.Config{Count: o.count, Duration: o.duration, Rate: o.rate, FrameSize: o.size}
	if !o.quiet {
		cfg.Progress = func(p pktgen.Progress) { fmt.Fprintln(stderr, p) }
	}
	var sender pktgen.Sender
	switch o.mode {
	case "live":
		g, err := bpf.NewGenerator(bpf.GeneratorOptions{Flows: o.flows})
		if err != nil {
			return err
		}
		defer g.Close()
		sender = pktgen.SenderFunc(func(ctx context.Context, n uint64) (uint64, error) {
			return g.Run(ctx, frame, ifindex, n)
		})
		// Each kernel call costs tens of ms here: big calls, paced in bursts.
		cfg.Batch, cfg.PaceInterval = 1<<20, 100*time.Millisecond
	case "afxdp":
		x, err := newXSKSender(ifindex, o.queue, spec, o.flows)
		if err != nil {
			return err
		}
		defer x.close(stdout)
		sender = x
		cfg.Batch = 4096
	}

	before, _ := linkStats(ifindex)
	fmt.Fprintf(stderr, "pktgen: %s mode, %s (ifindex %d), %v -> %v via %v, %d-byte frames (%d + FCS), %d flow(s)\n",
		o.mode, o.dev, ifindex, src, dst, dstMAC, o.size, len(frame), o.flows)
	res, runErr := pktgen.Run(ctx, cfg, sender)
	fmt.Fprintln(stdout, res)
	if after, err := linkStats(ifindex); err == nil && before != nil {
		fmt.Fprintf(stdout, "interface %s: tx_packets +%d, tx_dropped +%d\n", o.dev,
			after.TxPackets-before.TxPackets, after.TxDropped-before.TxDropped)
	}
	if errors.Is(runErr, context.Canceled) {
		return nil // interrupted: the summary says what was sent
	}
	return runErr
}

func linkStats(ifindex int) (*netlink.LinkStatistics, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, err
	}
	return l.Attrs().Statistics, nil
}

// source parses -src or picks the interface's first lab address of dst's
// family.
func source(link netlink.Link, s string, dst netip.Addr) (netip.AddrPort, error) {
	const defPort = 10000
	if s != "" {
		return parseAddrPort(s, defPort)
	}
	family := netlink.FAMILY_V4
	if dst.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(link, family)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("pktgen: addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && pktgen.CheckLabAddr(ip) == nil {
			return netip.AddrPortFrom(ip.Unmap(), defPort), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("pktgen: %s has no lab address of %v's family: give -src", link.Attrs().Name, dst)
}

// nextHopMAC parses -dst-mac or finds the neighbour entry of dst's next hop
// on link (the lab's peers have static ones for the engine).
func nextHopMAC(link netlink.Link, s string, dst netip.Addr) (net.HardwareAddr, error) {
	if s != "" {
		mac, err := net.ParseMAC(s)
		if err != nil || len(mac) != 6 {
			return nil, fmt.Errorf("pktgen: -dst-mac %q: want a 6-byte MAC", s)
		}
		return mac, nil
	}
	hop := dst
	if routes, err := netlink.RouteGet(dst.AsSlice()); err == nil && len(routes) > 0 && routes[0].Gw != nil {
		if gw, ok := netip.AddrFromSlice(routes[0].Gw); ok {
			hop = gw.Unmap()
		}
	}
	family := netlink.FAMILY_V4
	if hop.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := netlink.NeighList(link.Attrs().Index, family)
	if err != nil {
		return nil, fmt.Errorf("pktgen: neighbours of %s: %w", link.Attrs().Name, err)
	}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP)
		if ok && ip.Unmap() == hop && len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
			return n.HardwareAddr, nil
		}
	}
	return nil, fmt.Errorf("pktgen: no neighbour entry for next hop %v on %s: give -dst-mac", hop, link.Attrs().Name)
}

// xskSender transmits through a nic.Port, cycling over one prebuilt frame
// per flow.
type xskSender struct {
	port   *nic.Port
	frames [][]byte
	next   int
	descs  []nic.Desc
}

func newXSKSender(ifindex, queue int, spec pktgen.UDPFrame, flows int) (*xskSender, error) {
	x := &xskSender{descs: make([]nic.Desc, 256)}
	base := spec.Src.Port()
	for i := range flows {
		spec.Src = netip.AddrPortFrom(spec.Src.Addr(), base+uint16(i))
		f, err := pktgen.BuildUDP(spec)
		if err != nil {
			return nil, err
		}
		x.frames = append(x.frames, f)
	}
	port, err := nic.Open(nic.Config{Ifindex: ifindex, Queue: queue, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	x.port = port
	return x, nil
}

// Send places up to n frames on the TX ring. It returns early, possibly with
// nothing sent, when no frame is free and no completion freed one; Run
// retries and gives up on a sender that stays stuck.
func (x *xskSender) Send(ctx context.Context, n uint64) (uint64, error) {
	var sent uint64
	for sent < n {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		k := x.port.Alloc(x.descs[:min(uint64(len(x.descs)), n-sent)])
		if k == 0 {
			if _, err := x.port.Transmit(nil); err != nil && !errors.Is(err, nic.ErrRingFull) {
				return sent, err
			}
			if x.port.Complete() == 0 {
				return sent, nil
			}
			continue
		}
		for i := range x.descs[:k] {
			f := x.frames[(x.next+i)%len(x.frames)]
			x.descs[i].Len = uint32(len(f))
			copy(x.port.Frame(x.descs[i]), f)
		}
		m, err := x.port.Transmit(x.descs[:k])
		if m < k {
			x.port.Release(x.descs[m:k])
		}
		x.next = (x.next + m) % len(x.frames)
		sent += uint64(m)
		if err != nil && !errors.Is(err, nic.ErrRingFull) {
			return sent, err
		}
		if m == 0 {
			return sent, nil
		}
	}
	return sent, nil
}

// close waits briefly for the last completions, reports the port's own
// counters and closes it.
func (x *xskSender) close(w io.Writer) {
	for range 100 {
		if _, err := x.port.Transmit(nil); err != nil {
			break
		}
		s, err := x.port.Stats()
		if err != nil || s.TxCompleted >= s.TxPackets {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if s, err := x.port.Stats(); err == nil {
		fmt.Fprintf(w, "af_xdp queue %d: tx ring %d, completed %d, ring full %d, kicks %d\n",
			x.port.Queue(), s.TxPackets, s.TxCompleted, s.TxRingFull, s.TxKicks)
	}
	x.port.Close()
}
