package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/xdpnet/xdpnet/engine"
	"github.com/xdpnet/xdpnet/internal/lab"
)

// engineUDPDUT is the engine's UDP path: a UDP socket of the engine's Net
// (the one its HTTP/3 frontends listen on) read one datagram at a time with
// ReadFrom, as quic-go reads it. On the xdp data plane the frames cross
// the steering program, a nic.Port per queue and gVisor's netstack; the
// baseline is the engine's kernel Net, a kernel UDP socket.
type engineUDPDUT struct {
	src  *labSource
	net  engine.Net
	pc   net.PacketConn
	rx   rxCounter
	done chan error
	cond map[string]string
}

var _ Offerer = (*engineUDPDUT)(nil)

// engineDUTs are the RFC 2544 devices of the engine's UDP path.
func engineDUTs() []DUT {
	return []DUT{
		{
			Name: "engine UDP (xdp+netstack)", NeedsRoot: true,
			Conditions: map[string]string{"queues": "1", "read": "ReadFrom"},
			Open:       openEngineUDP("xdp"),
		},
		{
			Name: "engine UDP (kernel Net)", NeedsRoot: true, Baseline: true,
			Conditions: map[string]string{"queues": "1", "read": "ReadFrom", "gro": "on"},
			Open:       openEngineUDP("kernel"),
		},
	}
}

func openEngineUDP(dataplane string) func(context.Context) (Offerer, func() error, error) {
	return func(ctx context.Context) (Offerer, func() error, error) {
		d := &engineUDPDUT{done: make(chan error, 1), cond: map[string]string{}}
		opts := lab.Options{}
		dst := func(l *lab.Lab) netip.Addr { return l.ClientLink.EngineV4 }
		if dataplane == "kernel" {
			// The kernel owns an address there, and GRO gives the veth the
			// NAPI the generator's frames need.
			opts = lab.Options{EngineKernelAddrs: true, EngineGRO: true}
			dst = func(l *lab.Lab) netip.Addr { return l.ClientLink.KernelV4 }
		}
		var err error
		if d.src, err = newLabSource(opts, dst); err != nil {
			return nil, nil, err
		}
		fail := func(err error) (Offerer, func() error, error) {
			if d.pc != nil {
				d.pc.Close()
			}
			if d.net != nil {
				err = errors.Join(err, d.net.Close())
			}
			return nil, nil, errors.Join(err, d.src.close())
		}
		l := d.src.lab
		d.rx.epoch = d.src.epoch
		d.cond["source"] = d.src.source
		switch dataplane {
		case "kernel":
			d.net = &engine.KernelNet{N: 1, Do: l.Engine.Do}
		default:
			// The demo configuration names the lab's interfaces and
			// addresses; only its interfaces section is used here.
			cfg, err := engine.ParseConfig([]byte(engine.DemoConfig))
			if err != nil {
				return fail(err)
			}
			x, err := engine.NewXDPNet(cfg, engine.XDPOptions{Do: l.Engine.Do, Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				return fail(fmt.Errorf("engine xdp net: %w", err))
			}
			d.net = x
			d.cond["buffers"] = fmt.Sprintf("%d frames of %d", cfg.Buffers.Frames, cfg.Buffers.FrameSize)
		}
		d.cond["net"] = d.net.Name()
		if d.pc, err = d.net.ListenUDP(netip.AddrPortFrom(d.src.flow.Dst, benchDstPort)); err != nil {
			return fail(fmt.Errorf("listen: %w", err))
		}
		go d.receive()
		return d, d.close, nil
	}
}

func (d *engineUDPDUT) Conditions() map[string]string { return d.cond }

func (d *engineUDPDUT) receive() {
	buf := make([]byte, 2048)
	for {
		n, _, err := d.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				err = nil
			}
			d.done <- err
			return
		}
		if d.rx.probes.Load() {
			if stamp, ok := probePayload(buf[:n]); ok {
				d.rx.probe(stamp)
			}
		}
		d.rx.n.Add(1)
	}
}

func (d *engineUDPDUT) Offer(ctx context.Context, t Trial) (TrialResult, error) {
	return d.rx.trial(ctx, t, d.src)
}

func (d *engineUDPDUT) close() error {
	err := d.pc.Close()
	if rerr := <-d.done; rerr != nil {
		err = errors.Join(err, fmt.Errorf("receiver: %w", rerr))
	}
	return errors.Join(err, d.net.Close(), d.src.close())
}
