package nic

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asavie/xdp"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/privtest"
)

// The benchmarks receive 64-byte frames (60 bytes plus the FCS a wire
// would add) that package bpf's live-frames generator sends from the client
// peer's veth, and either recycle them (RxRecycle) or send them back with
// their MAC addresses swapped (L2Echo). Each runs three implementations on
// the same lab, steering program and ring sizes:
//
//   - impl=baseline: asavie/xdp's Socket driven as its README shows
//     (Fill(GetDescs(NumFreeFillSlots())), Poll, Receive, Transmit);
//   - impl=xdpnet: a Port, parked in the runtime poller when idle (the
//     baseline sleeps in poll(2));
//   - impl=xdpnet-busypoll: a Port spinning 50 µs before it sleeps.
//
// One op is one generated frame. Metrics: gen-pps (the generator's rate),
// rx-pps (frames the loop received per second of generation), drop-*-%
// (share of generated frames lost, by cause: fill ring empty, RX ring full,
// other socket or steering drops, and frames the veth refused before XDP),
// cpu-ns/pkt
// (the receiving thread's user+system CPU per received frame, getrusage
// RUSAGE_THREAD) and, for the Port, cpu-vs-baseline (its CPU per frame over
// the baseline's in the same run; below 1 is better). The echo adds tx-pps
// (transmissions completed), echoed-% and cpu-ns/echo (CPU per frame sent
// back), and its cpu-vs-baseline compares cpu-ns/echo. pkts/wait is frames
// received per Wait or Poll call.

const (
	benchFrameLen = 60
	benchFrames   = 16384
	benchRing     = 8192
	benchBatch    = 64
)

// benchImpls in the order they run: the baseline first, so the others can
// report their CPU per packet relative to it.
var benchImpls = []string{"baseline", "xdpnet", "xdpnet-busypoll"}

func BenchmarkRxRecycle(b *testing.B) { benchLoop(b, false) }

func BenchmarkL2Echo(b *testing.B) { benchLoop(b, true) }

func benchLoop(b *testing.B, echo bool) {
	privtest.RequireRoot(b)
	var baselineCPU float64
	for _, impl := range benchImpls {
		env := newBenchEnv(b, impl, echo)
		b.Run(fmt.Sprintf("impl=%s/size=64", impl), func(b *testing.B) {
			cpu := env.measure(b)
			if impl == "baseline" {
				baselineCPU = cpu
			} else if baselineCPU > 0 && cpu > 0 {
				b.ReportMetric(cpu/baselineCPU, "cpu-vs-baseline")
			}
		})
		if err := env.close(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchEnv is one lab with the steering program, the generator and one
// receiver (a Port or an asavie/xdp Socket) on the engine's queue 0.
type benchEnv struct {
	l      *lab.Lab
	lk     lab.Link
	steer  *bpf.Steering
	gen    *bpf.Generator
	peerNL *netlink.Handle // netlink in the client namespace, for the veth's drop counter
	drop   link.Link       // XDP_DROP on the peer, so echoed frames cost the peer nothing
	frame  []byte
	echo   bool

	port *Port
	xsk  *xdp.Socket
}

func newBenchEnv(b *testing.B, impl string, echo bool) *benchEnv {
	b.Helper()
	l, err := lab.New(lab.Options{})
	if err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{l: l, lk: l.ClientLink, echo: echo}
	fail := func(err error) {
		b.Helper()
		e.close()
		b.Fatal(err)
	}
	if e.steer, err = newSteering(l, e.lk); err != nil {
		fail(err)
	}
	if e.gen, err = bpf.NewGenerator(bpf.GeneratorOptions{}); err != nil {
		fail(err)
	}
	h, err := netns.GetFromPath(l.Client.Path())
	if err != nil {
		fail(err)
	}
	e.peerNL, err = netlink.NewHandleAt(h)
	h.Close()
	if err != nil {
		fail(err)
	}
	if echo {
		if err := l.Client.Do(func() (err error) { e.drop, err = attachDrop(e.lk.PeerIndex); return err }); err != nil {
			fail(err)
		}
	}
	e.frame = make([]byte, benchFrameLen)
	buildUDP(e.frame, e.lk.PeerMAC, e.lk.MAC, netip.AddrPortFrom(e.lk.PeerV4()[0], 1024),
		netip.AddrPortFrom(e.lk.EngineV4, echoPort), make([]byte, benchFrameLen-42))

	err = l.Engine.Do(func() (err error) {
		switch impl {
		case "baseline":
			e.xsk, err = xdp.NewSocket(e.lk.Index, 0, &xdp.SocketOptions{
				NumFrames: benchFrames, FrameSize: 2048,
				FillRingNumDescs: benchRing, CompletionRingNumDescs: benchRing,
				RxRingNumDescs: benchRing, TxRingNumDescs: benchRing,
			})
			if err != nil {
				return err
			}
			return e.steer.SetSocket(0, e.xsk.FD())
		default:
			cfg := Config{Ifindex: e.lk.Index, Map: e.steer, ZeroCopy: ZeroCopyOff,
				Frames: benchFrames, FillSize: benchRing, RXSize: benchRing, TXSize: benchRing, CompSize: benchRing}
			if impl == "xdpnet-busypoll" {
				cfg.BusyPoll = 50 * time.Microsecond
			}
			e.port, err = Open(cfg)
			return err
		}
	})
	if err != nil {
		fail(err)
	}
	return e
}

// attachDrop attaches a program that drops every frame to ifindex.
func attachDrop(ifindex int) (link.Link, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "nic_bench_drop", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}}) // XDP_DROP
	if err != nil {
		return nil, err
	}
	defer prog.Close() // the link keeps it
	return link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
}

func (e *benchEnv) close() error {
	var errs []error
	if e.port != nil {
		errs = append(errs, e.port.Close())
	}
	if e.xsk != nil {
		// asavie/xdp leaves its rings mapped, so this socket (and its
		// pinned UMEM) lives until the process exits; deleting the lab's
		// namespaces unbinds it from the veth.
		errs = append(errs, e.steer.DeleteSocket(0), e.xsk.Close())
	}
	if e.drop != nil {
		errs = append(errs, e.drop.Close())
	}
	for _, c := range []interface{ Close() error }{e.gen, e.steer} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	if e.peerNL != nil {
		e.peerNL.Close()
	}
	errs = append(errs, e.l.Close())
	return errors.Join(errs...)
}

// dropCounts are the cumulative counters drops are computed from, and the
// transmit completions.
type dropCounts struct {
	fillEmpty, rxFull, otherXSK, veth, notSteered uint64
	txDone                                        uint64
}

func (d dropCounts) sub(o dropCounts) dropCounts {
	return dropCounts{d.fillEmpty - o.fillEmpty, d.rxFull - o.rxFull, d.otherXSK - o.otherXSK,
		d.veth - o.veth, d.notSteered - o.notSteered, d.txDone - o.txDone}
}

func (d dropCounts) total() uint64 {
	return d.fillEmpty + d.rxFull + d.otherXSK + d.veth + d.notSteered
}

func (e *benchEnv) drops() (dropCounts, error) {
	var d dropCounts
	var k KernelStats
	if e.port != nil {
		st, err := e.port.Stats()
		if err != nil {
			return d, err
		}
		k, d.txDone = st.Kernel, st.TxCompleted
	} else {
		st, err := e.xsk.Stats()
		if err != nil {
			return d, err
		}
		d.txDone = st.Completed
		k = KernelStats{RxDropped: st.KernelStats.Rx_dropped, RxRingFull: st.KernelStats.Rx_ring_full,
			RxFillRingEmptyDescs: st.KernelStats.Rx_fill_ring_empty_descs}
	}
	// rx_dropped includes the frames dropped for want of a fill entry.
	d.fillEmpty, d.rxFull = k.RxFillRingEmptyDescs, k.RxRingFull
	d.otherXSK = k.RxDropped - min(k.RxDropped, k.RxFillRingEmptyDescs)
	pl, err := e.peerNL.LinkByIndex(e.lk.PeerIndex)
	if err != nil {
		return d, err
	}
	d.veth = pl.Attrs().Statistics.TxDropped
	c, err := e.steer.Counters()
	if err != nil {
		return d, err
	}
	d.notSteered = c.Passed + c.NoSocket + c.Malformed
	return d, nil
}

// measure generates b.N frames while the receiver loop runs on a locked
// thread, and reports the metrics listed at the top of the file. It returns
// the receiver's CPU ns per received frame, or per echoed frame for the echo.
func (e *benchEnv) measure(b *testing.B) float64 {
	before, err := e.drops()
	if err != nil {
		b.Fatal(err)
	}
	var genDone atomic.Bool
	var sent uint64
	var genErr error
	// The loop stops once the generator is done and every frame is either
	// received or counted as dropped (bounded by a deadline).
	var deadline time.Time
	var stopErr error
	until := func(rx uint64) bool {
		if !genDone.Load() {
			return false
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(2 * time.Second)
		}
		d, err := e.drops()
		if err != nil {
			stopErr = err
			return true
		}
		return rx+d.sub(before).total() >= sent || time.Now().After(deadline)
	}

	type result struct {
		rx, sleeps uint64
		cpu        time.Duration
		err        error
	}
	res := make(chan result, 1)
	ready := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cpu0 := threadCPU()
		close(ready)
		var r result
		if e.port != nil {
			r.rx, r.sleeps, r.err = e.portLoop(until)
		} else {
			r.rx, r.sleeps, r.err = e.asavieLoop(until)
		}
		r.cpu = threadCPU() - cpu0
		res <- r
	}()
	<-ready
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	genErr = e.l.Client.Do(func() error {
		var err error
		sent, err = e.gen.Run(ctx, e.frame, e.lk.PeerIndex, uint64(b.N))
		return err
	})
	cancel()
	genDur := time.Since(start)
	genDone.Store(true)
	r := <-res
	b.StopTimer()
	if genErr != nil {
		b.Fatal(genErr)
	}
	if r.err != nil || stopErr != nil {
		b.Fatal(errors.Join(r.err, stopErr))
	}
	after, err := e.drops()
	if err != nil {
		b.Fatal(err)
	}
	d := after.sub(before)
	pct := func(v uint64) float64 { return 100 * float64(v) / float64(max(sent, 1)) }
	b.ReportMetric(float64(sent)/genDur.Seconds(), "gen-pps")
	// The receiving veth's NAPI runs in the generator's context, so frames
	// reach the RX ring while the generator runs: rate over its time.
	b.ReportMetric(float64(r.rx)/genDur.Seconds(), "rx-pps")
	b.ReportMetric(pct(d.fillEmpty), "drop-fill-empty-%")
	b.ReportMetric(pct(d.rxFull), "drop-rx-full-%")
	b.ReportMetric(pct(d.otherXSK+d.notSteered), "drop-other-%")
	b.ReportMetric(pct(d.veth), "drop-veth-%")
	if e.echo {
		b.ReportMetric(float64(d.txDone)/genDur.Seconds(), "tx-pps")
		b.ReportMetric(100*float64(d.txDone)/float64(max(r.rx, 1)), "echoed-%")
	}
	b.ReportMetric(float64(r.rx)/float64(max(r.sleeps, 1)), "pkts/wait")
	if lost := sent - min(sent, r.rx+d.total()); lost > sent/1000 {
		b.Logf("%d of %d frames neither received nor counted as dropped", lost, sent)
	}
	cpu := float64(r.cpu.Nanoseconds()) / float64(max(r.rx, 1))
	b.ReportMetric(cpu, "cpu-ns/pkt")
	if e.echo {
		// The baseline does not echo every frame it receives (its TX ring
		// fills and asavie/xdp drops what does not fit), so the echo's
		// figure of merit is the CPU per frame actually sent back.
		cpu = float64(r.cpu.Nanoseconds()) / float64(max(d.txDone, 1))
		b.ReportMetric(cpu, "cpu-ns/echo")
	}
	return cpu
}

// portLoop is the receive loop on a Port: batches of benchBatch, recycled
// straight back to the fill ring, or echoed with the MACs swapped.
func (e *benchEnv) portLoop(until func(uint64) bool) (rx, sleeps uint64, err error) {
	p := e.port
	descs := make([]Desc, benchBatch)
	for {
		n, err := p.Receive(descs)
		if err != nil {
			return rx, sleeps, err
		}
		if n == 0 {
			if until(rx) {
				return rx, sleeps, nil
			}
			sleeps++
			if _, err := p.Wait(10 * time.Millisecond); err != nil {
				return rx, sleeps, err
			}
			continue
		}
		rx += uint64(n)
		if !e.echo {
			p.Release(descs[:n])
			continue
		}
		for _, d := range descs[:n] {
			swapMAC(p.Frame(d))
		}
		sent, err := p.Transmit(descs[:n])
		if sent < n {
			p.Release(descs[sent:n])
		}
		if err != nil && !errors.Is(err, ErrRingFull) {
			return rx, sleeps, err
		}
	}
}

// asavieLoop is the same loop on asavie/xdp, written as its README shows;
// Poll waits 10 ms instead of forever so the loop can end.
func (e *benchEnv) asavieLoop(until func(uint64) bool) (rx, sleeps uint64, err error) {
	xsk := e.xsk
	for {
		xsk.Fill(xsk.GetDescs(xsk.NumFreeFillSlots()))
		sleeps++
		numRx, _, err := xsk.Poll(10)
		if err != nil {
			return rx, sleeps, err
		}
		if numRx == 0 {
			if until(rx) {
				return rx, sleeps, nil
			}
			continue
		}
		rxDescs := xsk.Receive(numRx)
		rx += uint64(len(rxDescs))
		if e.echo {
			for _, d := range rxDescs {
				swapMAC(xsk.GetFrame(d))
			}
			xsk.Transmit(rxDescs)
		}
	}
}

func swapMAC(f []byte) {
	for i := range 6 {
		f[i], f[6+i] = f[6+i], f[i]
	}
}

// threadCPU returns the calling thread's user plus system CPU time.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
