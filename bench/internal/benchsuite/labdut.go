package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/nic"
)

// LabDUTs are the devices under test of the RFC 2544 searches on the veth
// lab, each on a lab of its own. The source sends from the client peer's
// veth (the live-frames generator of package bpf where it can be paced, an
// AF_XDP socket otherwise: see newLabSource), so every frame crosses the
// veth pair into the engine namespace exactly as a peer's frame would:
//   - nic.Port receive-and-recycle, parked in the runtime poller when idle;
//   - the same with 50 µs of busy polling before it sleeps;
//   - the baseline: a kernel UDP socket in the engine namespace reading
//     with recvmmsg (the path the engine takes traffic away from);
//   - the engine's UDP path on its xdp data plane, and on its kernel Net as
//     that path's baseline (engineDUTs).
func LabDUTs() []DUT {
	return append([]DUT{
		{
			Name: "nic.Port poll", NeedsRoot: true,
			Conditions: map[string]string{"queues": "1", "busypoll": "0"},
			Open:       openNICDUT(0),
		},
		{
			Name: "nic.Port busy-poll", NeedsRoot: true,
			Conditions: map[string]string{"queues": "1", "busypoll": "50µs"},
			Open:       openNICDUT(50 * time.Microsecond),
		},
		{
			Name: "kernel UDP socket", NeedsRoot: true, Baseline: true,
			Conditions: map[string]string{"queues": "1", "read": "recvmmsg batch 64", "gro": "on"},
			Open:       openKernelUDPDUT,
		},
	}, engineDUTs()...)
}

// genSender sends with the live-frames generator out of the client peer's
// veth; Send must run on a thread inside the client namespace.
type genSender struct {
	gen     *bpf.Generator
	ifindex int
}

func (g genSender) Send(ctx context.Context, frame []byte, n uint64) (uint64, error) {
	return g.gen.Run(ctx, frame, g.ifindex, n)
}

// xskSender transmits through an AF_XDP socket (a nic.Port) on the client
// peer's veth: a userspace packet generator that can be paced finely.
type xskSender struct {
	port  *nic.Port
	descs []nic.Desc
}

// stallLimit bounds how long Send waits for TX completions to free frames.
const stallLimit = time.Second

func (x *xskSender) Send(ctx context.Context, frame []byte, n uint64) (uint64, error) {
	var sent uint64
	stalled := time.Time{}
	for sent < n {
		x.port.Complete()
		k := x.port.Alloc(x.descs[:min(uint64(len(x.descs)), n-sent)])
		m := 0
		if k > 0 {
			for i := range x.descs[:k] {
				x.descs[i].Len = uint32(len(frame))
				copy(x.port.Frame(x.descs[i]), frame)
			}
			var err error
			m, err = x.port.Transmit(x.descs[:k])
			if m < k {
				x.port.Release(x.descs[m:k])
			}
			sent += uint64(m)
			// A full TX ring is back-pressure: reap completions, go on.
			if err != nil && !errors.Is(err, nic.ErrRingFull) {
				return sent, fmt.Errorf("pktgen: transmit: %w", err)
			}
		}
		if m > 0 {
			stalled = time.Time{}
			continue
		}
		// Every frame in flight or the ring full: wait for the kernel,
		// bounded.
		if stalled.IsZero() {
			stalled = time.Now()
		} else if time.Since(stalled) > stallLimit {
			return sent, fmt.Errorf("pktgen: no TX progress for %v", stallLimit)
		}
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		runtime.Gosched()
	}
	return sent, nil
}

// maxGenCallCost is the per-call cost of the live-frames generator above
// which it cannot be paced: on kernels where every BPF_PROG_RUN with
// live frames and repeat > 1 costs an RCU grace period (about 24 ms
// measured on this project's 6.18 VMs, from the page pool teardown), a
// paced trial would be a train of 24 ms bursts, which measures the
// receiver's ring size rather than its throughput.
const maxGenCallCost = time.Millisecond

// labSource is the sending half every lab DUT shares: the lab, the packet
// source and the test flow into the engine namespace.
type labSource struct {
	lab    *lab.Lab
	gen    *bpf.Generator
	tx     *nic.Port // AF_XDP source, when the generator cannot be paced
	send1  sender
	source string // what sends, for the conditions
	flow   Flow
	epoch  time.Time
	frames map[int][]byte
}

// newLabSource builds a lab and picks the packet source: the live-frames
// generator when one call of it is cheap enough to pace, otherwise an
// AF_XDP socket on the client peer's veth.
func newLabSource(opts lab.Options, dst func(*lab.Lab) netip.Addr) (*labSource, error) {
	l, err := lab.New(opts)
	if err != nil {
		return nil, err
	}
	gen, err := bpf.NewGenerator(bpf.GeneratorOptions{})
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	link := l.ClientLink
	s := &labSource{
		lab: l, gen: gen, epoch: time.Now(), frames: map[int][]byte{},
		flow: Flow{
			SrcMAC: link.PeerMAC, DstMAC: link.MAC,
			Src: link.PeerV4()[0], Dst: dst(l),
			SrcPort: benchSrcPort, DstPort: benchDstPort,
		},
	}
	frame, err := s.flow.Frame(64)
	if err != nil {
		return nil, errors.Join(err, s.close())
	}
	err = l.Client.Do(func() error {
		var why string
		cost, err := probeGenerator(gen, frame, link.PeerIndex)
		switch {
		case err == nil && cost <= maxGenCallCost:
			s.send1 = genSender{gen, link.PeerIndex}
			s.source = "bpf live-frames generator"
			return nil
		case err == nil:
			why = fmt.Sprintf("live-frames generator costs %v per call here: cannot be paced", cost.Round(time.Millisecond))
		case errors.Is(err, unix.EPERM):
			// A sandbox may forbid live-frames BPF_PROG_RUN even to root;
			// the AF_XDP source needs no such permission.
			why = "live-frames generator forbidden here: EPERM"
		default:
			return fmt.Errorf("pktgen: probe the live-frames generator: %w", err)
		}
		s.tx, err = nic.Open(nic.Config{Ifindex: link.PeerIndex, Queue: 0, ZeroCopy: nic.ZeroCopyOff,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return fmt.Errorf("pktgen: AF_XDP source on %s: %w", link.PeerName, err)
		}
		s.send1 = &xskSender{port: s.tx, descs: make([]nic.Desc, 64)}
		s.source = "AF_XDP TX on the peer veth (" + why + ")"
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, s.close())
	}
	return s, nil
}

// probeGenerator returns the cheapest of two live-frames generator calls;
// it must run on a thread in the sending namespace.
func probeGenerator(gen *bpf.Generator, frame []byte, ifindex int) (time.Duration, error) {
	cost := time.Duration(1<<63 - 1)
	for range 2 {
		start := time.Now()
		if _, err := gen.Run(context.Background(), frame, ifindex, 2); err != nil {
			return 0, err
		}
		cost = min(cost, time.Since(start))
	}
	return cost, nil
}

// send runs one trial's sending on a thread in the client namespace and
// returns what it sent and for how long.
func (s *labSource) send(ctx context.Context, t Trial) (sent uint64, elapsed time.Duration, err error) {
	frame, ok := s.frames[t.FrameSize]
	if !ok {
		if frame, err = s.flow.Frame(t.FrameSize); err != nil {
			return 0, 0, err
		}
		s.frames[t.FrameSize] = frame
	}
	var probe func(time.Duration) []byte
	if t.Probes {
		probe = func(d time.Duration) []byte { return stampProbe(frame, d) }
	}
	err = s.lab.Client.Do(func() error {
		var err error
		sent, elapsed, err = pace(ctx, s.send1, frame, t.Rate, t.Duration, probe, s.epoch)
		return err
	})
	return sent, elapsed, err
}

func (s *labSource) close() error {
	var errs []error
	if s.tx != nil {
		errs = append(errs, s.tx.Close())
	}
	return errors.Join(append(errs, s.gen.Close(), s.lab.Close())...)
}

// rxCounter is the receiving half: a count and, while probes are on, the
// probes' latencies.
type rxCounter struct {
	n      atomic.Uint64
	probes atomic.Bool
	epoch  time.Time

	mu  sync.Mutex
	lat []time.Duration
}

func (c *rxCounter) probe(stamp time.Duration) {
	d := time.Since(c.epoch) - stamp
	c.mu.Lock()
	c.lat = append(c.lat, d)
	c.mu.Unlock()
}

// trial runs send with the counter armed and waits for the frames in flight
// to be counted.
func (c *rxCounter) trial(ctx context.Context, t Trial, src *labSource) (TrialResult, error) {
	c.mu.Lock()
	c.lat = nil
	c.mu.Unlock()
	c.probes.Store(t.Probes)
	defer c.probes.Store(false)
	before := c.n.Load()
	cpu0, cpuErr := ReadCPU()
	sent, elapsed, err := src.send(ctx, t)
	if err != nil {
		return TrialResult{}, err
	}
	// Frames still in rings or socket buffers: wait until the count stops
	// moving (bounded: 500 ms).
	last := c.n.Load()
	for range 50 {
		time.Sleep(10 * time.Millisecond)
		now := c.n.Load()
		if now == last {
			break
		}
		last = now
	}
	r := TrialResult{Sent: sent, Received: last - before, Elapsed: elapsed}
	if cpu1, err := ReadCPU(); cpuErr == nil && err == nil {
		r.CPU = cpu1.Sub(cpu0).Busy
	}
	c.mu.Lock()
	r.Latency = c.lat
	c.lat = nil
	c.mu.Unlock()
	return r, nil
}

// The nic DUT's UMEM and rings, recorded with its figures.
const (
	nicFrames = 8192
	nicRing   = 2048
)

// nicDUT is a nic.Port on the engine side of the client veth, behind the
// steering program, receiving and recycling every frame.
type nicDUT struct {
	src   *labSource
	steer *bpf.Steering
	port  *nic.Port
	rx    rxCounter

	stop chan struct{}
	done chan error
}

var _ Offerer = (*nicDUT)(nil)

func openNICDUT(busyPoll time.Duration) func(context.Context) (Offerer, func() error, error) {
	return func(ctx context.Context) (Offerer, func() error, error) {
		d := &nicDUT{stop: make(chan struct{}), done: make(chan error, 1)}
		var err error
		d.src, err = newLabSource(lab.Options{}, func(l *lab.Lab) netip.Addr { return l.ClientLink.EngineV4 })
		if err != nil {
			return nil, nil, err
		}
		link := d.src.lab.ClientLink
		d.rx.epoch = d.src.epoch
		err = d.src.lab.Engine.Do(func() error {
			if d.steer, err = bpf.LoadSteering(bpf.SteeringOptions{Queues: 1}); err != nil {
				return err
			}
			if err := d.steer.Attach(link.Index, bpf.ModeAuto); err != nil {
				return err
			}
			if err := d.steer.AddAddr(link.EngineV4); err != nil {
				return err
			}
			d.port, err = nic.Open(nic.Config{Ifindex: link.Index, Queue: 0, Map: d.steer, BusyPoll: busyPoll,
				Frames: nicFrames, FillSize: nicRing, RXSize: nicRing, TXSize: nicRing, CompSize: nicRing})
			return err
		})
		if err != nil {
			return nil, nil, errors.Join(err, d.closeParts())
		}
		go d.receive()
		return d, d.close, nil
	}
}

// Conditions reports how the port ended up bound.
func (d *nicDUT) Conditions() map[string]string {
	return map[string]string{
		"xdp":      d.steer.Mode().String(),
		"zerocopy": strconv.FormatBool(d.port.ZeroCopy()),
		"frame":    strconv.Itoa(d.port.FrameSize()),
		"rings":    fmt.Sprintf("fill=rx=tx=comp=%d frames=%d", nicRing, nicFrames),
		"source":   d.src.source,
	}
}

func (d *nicDUT) receive() {
	descs := make([]nic.Desc, 256)
	for {
		select {
		case <-d.stop:
			d.done <- nil
			return
		default:
		}
		n, err := d.port.Receive(descs)
		if err != nil {
			d.done <- err
			return
		}
		if n == 0 {
			if _, err := d.port.Wait(10 * time.Millisecond); err != nil {
				d.done <- err
				return
			}
			continue
		}
		if d.rx.probes.Load() {
			for _, desc := range descs[:n] {
				if stamp, ok := probeStamp(d.port.Frame(desc)); ok {
					d.rx.probe(stamp)
				}
			}
		}
		d.rx.n.Add(uint64(n))
		d.port.Release(descs[:n])
	}
}

func (d *nicDUT) Offer(ctx context.Context, t Trial) (TrialResult, error) {
	return d.rx.trial(ctx, t, d.src)
}

func (d *nicDUT) close() error {
	close(d.stop)
	d.port.Wake()
	err := <-d.done
	return errors.Join(err, d.closeParts())
}

func (d *nicDUT) closeParts() error {
	var errs []error
	if d.port != nil {
		errs = append(errs, d.port.Close())
	}
	if d.steer != nil {
		errs = append(errs, d.steer.Close())
	}
	return errors.Join(append(errs, d.src.close())...)
}

// dutReadBuffer is the receive buffer of the DUTs' sockets: as large as
// net.core.rmem_max lets an unprivileged reader have.
const dutReadBuffer = 4 << 20

// openKernelUDPDUT is the baseline: no XDP program, GRO on the
// engine-side veth (so it has NAPI and accepts the generator's frames), a
// kernel address there and a UDP socket reading with recvmmsg.
func openKernelUDPDUT(ctx context.Context) (Offerer, func() error, error) {
	src, err := newLabSource(lab.Options{EngineKernelAddrs: true, EngineGRO: true},
		func(l *lab.Lab) netip.Addr { return l.ClientLink.KernelV4 })
	if err != nil {
		return nil, nil, err
	}
	d := newSocketDUT(src)
	var conn *net.UDPConn
	err = src.lab.Engine.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src.flow.Dst, benchDstPort)))
		if err != nil {
			return err
		}
		d.pc = conn
		return conn.SetReadBuffer(dutReadBuffer)
	})
	if err != nil {
		return d.fail(err)
	}
	d.start(func() error { return d.readBatch(conn) })
	return d, d.close, nil
}
