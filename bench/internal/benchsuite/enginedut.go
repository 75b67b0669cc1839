package benchsuite

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/xdpnet/xdpnet/engine/netapi"

	"github.com/xdpnet/xdpnet/engine/config"

	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/internal/lab"
)

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

// openEngineUDP opens the engine's UDP path: a UDP socket of the engine's
// Net (the one its HTTP/3 frontends listen on) read one datagram at a time
// with ReadFrom, as quic-go reads it. On the xdp data plane the frames
// cross the steering program, a nic.Port per queue and gVisor's netstack;
// the baseline is the engine's kernel Net, a kernel UDP socket.
func openEngineUDP(stack string) func(context.Context) (Offerer, func() error, error) {
	return func(ctx context.Context) (Offerer, func() error, error) {
		opts := lab.Options{}
		dst := func(l *lab.Lab) netip.Addr { return l.ClientLink.EngineV4 }
		if stack == "kernel" {
			// The kernel owns an address there, and GRO gives the veth the
			// NAPI the generator's frames need.
			opts = lab.Options{EngineKernelAddrs: true, EngineGRO: true}
			dst = func(l *lab.Lab) netip.Addr { return l.ClientLink.KernelV4 }
		}
		src, err := newLabSource(opts, dst)
		if err != nil {
			return nil, nil, err
		}
		d := newSocketDUT(src)
		l := src.lab
		var n netapi.Net
		switch stack {
		case "kernel":
			n = &netapi.Kernel{N: 1, Do: l.Engine.Do}
		default:
			// The demo configuration names the lab's interfaces and
			// addresses; only its interfaces section is used here.
			cfg, err := config.Parse([]byte(config.Demo))
			if err != nil {
				return d.fail(err)
			}
			x, err := dataplane.New(cfg.DataPlane(), dataplane.Options{Do: l.Engine.Do, Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				return d.fail(fmt.Errorf("engine xdp net: %w", err))
			}
			n = x
			d.cond["buffers"] = fmt.Sprintf("%d frames of %d", cfg.Buffers.Frames, cfg.Buffers.FrameSize)
		}
		d.closers = append(d.closers, n.Close)
		d.cond["net"] = n.Name()
		if d.pc, err = n.ListenUDP(netip.AddrPortFrom(src.flow.Dst, benchDstPort)); err != nil {
			return d.fail(fmt.Errorf("listen: %w", err))
		}
		// quic-go, which the engine's frontends run on these sockets, raises
		// the receive buffer too; the default (208 KiB, about 90 full-size
		// frames) lasts a few ms at the trials' rates, less than one
		// scheduling stall on a loaded 2-core machine.
		if rb, ok := d.pc.(interface{ SetReadBuffer(int) error }); ok {
			if err := rb.SetReadBuffer(dutReadBuffer); err != nil {
				return d.fail(fmt.Errorf("read buffer: %w", err))
			}
		}
		d.start(d.readEach)
		return d, d.close, nil
	}
}
