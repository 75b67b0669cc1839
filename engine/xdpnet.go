package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/stack"
)

// XDPOptions configure [NewXDPNet].
type XDPOptions struct {
	// Do runs set-up that must happen inside the interfaces' network
	// namespace (nic.Open, XDP attach); nil runs it on the calling thread.
	Do func(func() error) error
	// TrustRXChecksum accepts frames whose checksums the NIC did not verify
	// (a lab whose kernel peers keep TX checksum offload on).
	TrustRXChecksum bool
	// Log receives set-up events; nil uses slog.Default().
	Log *slog.Logger
}

// XDPNet is [Net] on AF_XDP: per configured interface, the bpf steering
// program sends the frames for the engine's addresses on each dedicated
// queue to a nic.Port, and one gVisor netstack (package stack) terminates
// TCP and UDP on them. Everything else on those interfaces stays with the
// kernel. There is one worker per dedicated queue.
type XDPNet struct {
	log     *slog.Logger
	st      *stack.Stack
	ifs     []*xdpIf
	workers int
}

type xdpIf struct {
	name  string
	mtu   int
	steer *bpf.Steering
	ep    *stack.Endpoint
	ports []*nic.Port // owned by ep; kept for their statistics
	flows flowRules   // n-tuple rules installed at start, removed by Close

	// addrs are the engine's addresses on the interface; its queues are
	// served by workers firstWorker .. firstWorker+queues-1, in the order
	// of the configuration's queues (the endpoint's queue indexes).
	addrs       []netip.Addr
	firstWorker int
	queues      int
	// fq tells the RX queue of a TCP flow's SYN: the endpoint (a fake
	// in unit tests).
	fq flowQueuer
}

// flowQueuer is stack.Endpoint.FlowQueue: the index of the RX queue a TCP
// connection's SYN arrived on, if the endpoint still remembers it.
type flowQueuer interface {
	FlowQueue(local, remote netip.AddrPort) (queue int, ok bool)
}

var (
	_ Net             = (*XDPNet)(nil)
	_ serverConnector = (*XDPNet)(nil)
	_ connWorker      = (*XDPNet)(nil)
)

// NewXDPNet opens every dedicated queue of cfg.Interfaces. On error it
// releases what it opened.
func NewXDPNet(cfg *Config, opts XDPOptions) (_ *XDPNet, err error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Do == nil {
		opts.Do = func(fn func() error) error { return fn() }
	}
	st, err := stack.New(stack.Options{})
	if err != nil {
		return nil, fmt.Errorf("xdp: netstack: %w", err)
	}
	x := &XDPNet{log: opts.Log, st: st}
	defer func() {
		if err != nil {
			x.Close()
		}
	}()
	for i := range cfg.Interfaces {
		if err := x.openIf(&cfg.Interfaces[i], &cfg.Buffers, opts); err != nil {
			return nil, fmt.Errorf("xdp: interface %s: %w", cfg.Interfaces[i].Name, err)
		}
	}
	return x, nil
}

func (x *XDPNet) openIf(it *Interface, buf *Buffers, opts XDPOptions) error {
	xi := &xdpIf{name: it.Name}
	x.ifs = append(x.ifs, xi)
	var mac net.HardwareAddr
	var mtu int
	maxQ := 0
	for _, q := range it.Queues {
		maxQ = max(maxQ, q)
	}
	mode := map[string]bpf.Mode{"auto": bpf.ModeAuto, "native": bpf.ModeNative, "generic": bpf.ModeGeneric}[it.XDPMode]
	zc := map[string]nic.ZeroCopy{"auto": nic.ZeroCopyAuto, "off": nic.ZeroCopyOff, "on": nic.ZeroCopyForce}[it.ZeroCopy]
	err := opts.Do(func() error {
		ifc, err := net.InterfaceByName(it.Name)
		if err != nil {
			return err
		}
		mac, mtu = ifc.HardwareAddr, ifc.MTU
		xi.mtu = mtu
		steer, err := bpf.LoadSteering(bpf.SteeringOptions{Queues: maxQ + 1})
		if err != nil {
			return fmt.Errorf("load steering program: %w", err)
		}
		xi.steer = steer
		for _, p := range it.addrs {
			if err := steer.AddAddr(p.Addr()); err != nil {
				return fmt.Errorf("steer %s: %w", p.Addr(), err)
			}
		}
		if err := steer.Attach(ifc.Index, mode); err != nil {
			return fmt.Errorf("attach XDP (%s): %w", it.XDPMode, err)
		}
		for _, q := range it.Queues {
			p, err := nic.Open(nic.Config{
				Ifindex: ifc.Index, Queue: q, Map: steer,
				Frames: buf.Frames, FrameSize: buf.FrameSize,
				RXReserve: buf.Reserve, CacheSize: buf.Cache,
				ZeroCopy: zc, Logger: x.log, BusyPoll: it.BusyPoll.D(),
			})
			if err != nil {
				return fmt.Errorf("queue %d: %w", q, err)
			}
			xi.ports = append(xi.ports, p)
		}
		return nil
	})
	if err != nil {
		for _, p := range xi.ports {
			p.Close()
		}
		xi.ports = nil
		return err
	}
	ports := make([]stack.Port, len(xi.ports))
	for i, p := range xi.ports {
		ports[i] = p
	}
	// AddXDPNIC puts a FIFO queueing discipline in front of the endpoint,
	// so the packets of many connections leave in batches, one TX kick
	// each, rather than one kick per packet.
	n, ep, err := x.st.AddXDPNIC(ports, stack.EndpointOptions{
		MAC: mac, MTU: uint32(mtu), TrustRXChecksum: opts.TrustRXChecksum,
	}, stack.NICOptions{Name: it.Name})
	if err != nil {
		xi.ports = nil // AddXDPNIC took them and closed them
		return fmt.Errorf("add NIC: %w", err)
	}
	xi.ep = ep
	xi.fq = ep
	for _, p := range it.addrs {
		if err := n.AddAddress(p); err != nil {
			return fmt.Errorf("address %s: %w", p, err)
		}
	}
	if it.gw.IsValid() {
		if err := n.SetDefaultGateway(it.gw); err != nil {
			return fmt.Errorf("gateway %s: %w", it.gw, err)
		}
	}
	if xi.flows, err = installFlowRules(it, opts.Do, x.log); err != nil {
		return err
	}
	for _, p := range it.addrs {
		xi.addrs = append(xi.addrs, p.Addr())
	}
	xi.firstWorker, xi.queues = x.workers, len(it.Queues)
	x.workers += len(it.Queues)
	// Ports of one interface bind alike, so the first speaks for all.
	x.log.Info("AF_XDP interface ready", "interface", it.Name, "queues", it.Queues,
		"xdp_mode", xi.steer.Mode().String(), "mtu", mtu,
		"zerocopy", xi.ports[0].ZeroCopy(), "tx_checksum_offload", xi.ports[0].TxChecksumOffload())
	return nil
}

// Name implements Net.
func (x *XDPNet) Name() string { return "xdp+netstack" }

// Workers implements Net: one per dedicated queue.
func (x *XDPNet) Workers() int { return max(1, x.workers) }

// WorkerFor implements connWorker: the worker of the dedicated queue on
// which the SYN of the TCP connection local <- remote arrived, so that the
// connection's requests are served by the worker whose queue carries its
// packets. false when the interface owning local cannot tell (its flow
// table forgot the SYN).
func (x *XDPNet) WorkerFor(local, remote netip.AddrPort) (int, bool) {
	la := local.Addr().Unmap()
	local = netip.AddrPortFrom(la, local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	for _, xi := range x.ifs {
		if !slices.Contains(xi.addrs, la) {
			continue
		}
		if xi.fq == nil {
			return 0, false
		}
		q, ok := xi.fq.FlowQueue(local, remote)
		if !ok || q < 0 || q >= xi.queues {
			return 0, false
		}
		return xi.firstWorker + q, true
	}
	return 0, false
}

// ListenTCP implements Net.
func (x *XDPNet) ListenTCP(addr netip.AddrPort) (net.Listener, error) { return x.st.ListenTCP(addr) }

// ListenUDP implements Net.
func (x *XDPNet) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) { return x.st.ListenUDP(addr) }

// BackendPacketConn implements Net: a netstack UDP socket on an ephemeral
// port of the engine address that routes to backend.
func (x *XDPNet) BackendPacketConn(_ int, backend netip.Addr) (net.PacketConn, error) {
	src, ok := x.sourceFor(backend)
	if !ok {
		return nil, fmt.Errorf("xdp: no interface address on a route to %s", backend)
	}
	return x.st.ListenUDP(netip.AddrPortFrom(src, 0))
}

// BackendConnFor implements serverConnector: a netstack UDP socket on an
// ephemeral port of the engine address that routes to server, connected to
// server.
func (x *XDPNet) BackendConnFor(_ int, server netip.AddrPort) (net.PacketConn, error) {
	src, ok := x.sourceFor(server.Addr())
	if !ok {
		return nil, fmt.Errorf("xdp: no interface address on a route to %s", server.Addr())
	}
	c, err := x.st.DialUDP(netip.AddrPortFrom(src, 0), server)
	if err != nil {
		return nil, err
	}
	pc, err := mux.ConnectedPacketConn(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return pc, nil
}

// sourceFor picks the engine address on the subnet of dst, else the first
// address of dst's family on an interface with a gateway.
func (x *XDPNet) sourceFor(dst netip.Addr) (netip.Addr, bool) {
	var fallback netip.Addr
	for _, n := range x.st.NICs() {
		for _, p := range n.Addresses() {
			if p.Contains(dst) {
				return p.Addr(), true
			}
			if p.Addr().Is4() == dst.Is4() && !fallback.IsValid() {
				fallback = p.Addr()
			}
		}
	}
	return fallback, fallback.IsValid()
}

// QUICPacketSize is the UDP payload that fits the MTU of the interface
// whose subnet holds dst (IPv4 20 + UDP 8, or IPv6 40 + UDP 8 bytes of
// headers), or 0 when none does.
func (x *XDPNet) QUICPacketSize(dst netip.Addr) uint16 {
	for _, n := range x.st.NICs() {
		for _, p := range n.Addresses() {
			if !p.Contains(dst) {
				continue
			}
			for _, xi := range x.ifs {
				if xi.name != n.Name() {
					continue
				}
				hdr := 28
				if dst.Is6() && !dst.Is4In6() {
					hdr = 48
				}
				if m := xi.mtu - hdr; m >= 1200 {
					return uint16(min(m, 65527))
				}
			}
		}
	}
	return 0
}

// Collector implements Net: frames in use, port and kernel XDP counters and
// the steering program's counters.
func (x *XDPNet) Collector() prometheus.Collector { return xdpCollector{x} }

// Close implements Net. The stack closes the endpoints (it stops their
// receive goroutines before netstack's teardown, drains TX and closes the
// ports); ports that never reached an endpoint are closed here.
func (x *XDPNet) Close() error {
	var errs []error
	if x.st != nil {
		errs = append(errs, x.st.Close())
	}
	for _, xi := range x.ifs {
		errs = append(errs, xi.flows.remove())
		if xi.ep != nil {
			errs = append(errs, xi.ep.CloseErr())
		} else {
			for _, p := range xi.ports {
				errs = append(errs, p.Close())
			}
		}
		if xi.steer != nil {
			errs = append(errs, xi.steer.Close())
		}
	}
	x.ifs = nil
	return errors.Join(errs...)
}

type xdpCollector struct{ x *XDPNet }

var (
	framesInUseDesc = prometheus.NewDesc("xdpnet_umem_frames_in_use", "UMEM frames held outside the free rings (RX/TX rings, netstack, caches excluded).", []string{"interface"}, nil)
	framesDesc      = prometheus.NewDesc("xdpnet_umem_frames", "UMEM frames per interface.", []string{"interface"}, nil)
	xskDesc         = prometheus.NewDesc("xdpnet_xsk_packets_total", "AF_XDP socket counters.", []string{"interface", "dir"}, nil)
	xskKickDesc     = prometheus.NewDesc("xdpnet_xsk_tx_kicks_total", "sendto(2) wake-ups issued for the TX rings; per TX packet, it shows how well sends are batched.", []string{"interface"}, nil)
	xskRetryDesc    = prometheus.NewDesc("xdpnet_xsk_tx_kick_retries_total", "TX kicks the ports made on their own because a kick left frames on the TX ring (completion ring full, device busy, link down).", []string{"interface"}, nil)
	xskDropDesc     = prometheus.NewDesc("xdpnet_xsk_drops_total", "Kernel XDP_STATISTICS drops per reason.", []string{"interface", "reason"}, nil)
	steerDesc       = prometheus.NewDesc("xdpnet_xdp_frames_total", "Frames seen by the steering program, by verdict.", []string{"interface", "verdict"}, nil)
	epDropDesc      = prometheus.NewDesc("xdpnet_endpoint_drops_total", "Frames the netstack endpoint dropped.", []string{"interface", "dir"}, nil)
	epUDPFastDesc   = prometheus.NewDesc("xdpnet_endpoint_udp_fast_datagrams_total", "Datagrams of connected or address-bound UDP sockets (backend QUIC, HTTP/3 frontends) moved between frames and socket without the netstack.", []string{"interface", "dir"}, nil)
)

func (c xdpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{framesInUseDesc, framesDesc, xskDesc, xskKickDesc, xskRetryDesc, xskDropDesc, steerDesc, epDropDesc, epUDPFastDesc} {
		ch <- d
	}
}

func (c xdpCollector) Collect(ch chan<- prometheus.Metric) {
	for _, xi := range c.x.ifs {
		var inUse, frames float64
		var rx, tx, kicks, retries, fillEmpty, ringFull, dropped float64
		for _, p := range xi.ports {
			fs := p.Pool().Stats()
			inUse += float64(fs.InUse)
			frames += float64(fs.Frames)
			if s, err := p.Stats(); err == nil {
				rx += float64(s.RxPackets)
				tx += float64(s.TxPackets)
				kicks += float64(s.TxKicks)
				retries += float64(s.TxKickRetries)
				fillEmpty += float64(s.Kernel.RxFillRingEmptyDescs)
				ringFull += float64(s.Kernel.RxRingFull)
				dropped += float64(s.Kernel.RxDropped)
			}
		}
		ch <- prometheus.MustNewConstMetric(framesInUseDesc, prometheus.GaugeValue, inUse, xi.name)
		ch <- prometheus.MustNewConstMetric(framesDesc, prometheus.GaugeValue, frames, xi.name)
		ch <- prometheus.MustNewConstMetric(xskDesc, prometheus.CounterValue, rx, xi.name, "rx")
		ch <- prometheus.MustNewConstMetric(xskDesc, prometheus.CounterValue, tx, xi.name, "tx")
		ch <- prometheus.MustNewConstMetric(xskKickDesc, prometheus.CounterValue, kicks, xi.name)
		ch <- prometheus.MustNewConstMetric(xskRetryDesc, prometheus.CounterValue, retries, xi.name)
		ch <- prometheus.MustNewConstMetric(xskDropDesc, prometheus.CounterValue, fillEmpty, xi.name, "fill_ring_empty")
		ch <- prometheus.MustNewConstMetric(xskDropDesc, prometheus.CounterValue, ringFull, xi.name, "rx_ring_full")
		ch <- prometheus.MustNewConstMetric(xskDropDesc, prometheus.CounterValue, dropped, xi.name, "rx_dropped")
		if xi.steer != nil {
			if s, err := xi.steer.Counters(); err == nil {
				for v, n := range map[string]uint64{"redirected": s.Redirected, "passed": s.Passed, "no_socket": s.NoSocket, "malformed": s.Malformed} {
					ch <- prometheus.MustNewConstMetric(steerDesc, prometheus.CounterValue, float64(n), xi.name, v)
				}
			}
		}
		if xi.ep != nil {
			t := stack.Total(xi.ep.Stats())
			ch <- prometheus.MustNewConstMetric(epDropDesc, prometheus.CounterValue, float64(t.RXDrops()), xi.name, "rx")
			ch <- prometheus.MustNewConstMetric(epDropDesc, prometheus.CounterValue, float64(t.TXDrops()), xi.name, "tx")
			ch <- prometheus.MustNewConstMetric(epUDPFastDesc, prometheus.CounterValue, float64(t.RXUDPFast), xi.name, "rx")
			ch <- prometheus.MustNewConstMetric(epUDPFastDesc, prometheus.CounterValue, float64(t.TXUDPFast), xi.name, "tx")
		}
	}
}
