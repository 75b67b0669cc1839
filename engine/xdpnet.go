package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/mux/quicmux"
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
	// queueIDs are the NIC's ids of the dedicated queues, by endpoint
	// queue index: the queue label of the per-queue metrics.
	queueIDs []int
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
	xi.queueIDs = slices.Clone(it.Queues)
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
	pc, err := quicmux.ConnectedPacketConn(c)
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

// DataPlaneStats is the snapshot of the AF_XDP data plane's counters (the
// net part of /stats; see Stats for the tags).
type DataPlaneStats struct {
	Interfaces map[string]*InterfaceStats `json:"interfaces" by:"interface"`
	// NetstackDrops are netstack's drops by direction, then reason (see
	// stack.Stack.Drops): stack-wide, as netstack counts them per stack,
	// not per interface or queue.
	NetstackDrops map[string]map[string]uint64 `json:"netstack_drops" metric:"xdpnet_netstack_drops_total" by:"dir,reason"`
}

// InterfaceStats are the counters of one interface.
type InterfaceStats struct {
	// Queues are the dedicated queues, by the NIC's queue id.
	Queues map[string]*QueueStats `json:"queues" by:"queue"`
	// Steering are the steering program's counters per RX queue, dedicated
	// or not; "other" counts the queues above the highest dedicated one.
	Steering map[string]bpf.Counters `json:"steering" by:"queue"`
}

// QueueStats are the counters of one dedicated queue: its UMEM frame pool,
// its AF_XDP port (with the kernel's XDP_STATISTICS) and its netstack
// endpoint queue.
type QueueStats struct {
	UMEM     bufring.FrameStats `json:"umem"`
	Port     nic.Stats          `json:"port"`
	Endpoint stack.QueueStats   `json:"endpoint"`
}

var _ dataPlane = (*XDPNet)(nil)

// DataPlaneStats takes the data plane's snapshot. A port whose kernel
// statistics cannot be read (closing) still gives its own counters.
func (x *XDPNet) DataPlaneStats() *DataPlaneStats {
	s := &DataPlaneStats{Interfaces: map[string]*InterfaceStats{}, NetstackDrops: map[string]map[string]uint64{}}
	for _, xi := range x.ifs {
		is := &InterfaceStats{Queues: map[string]*QueueStats{}, Steering: map[string]bpf.Counters{}}
		s.Interfaces[xi.name] = is
		var eps []stack.QueueStats
		if xi.ep != nil {
			eps = xi.ep.Stats()
		}
		for i := range max(len(xi.ports), len(eps)) {
			qs := &QueueStats{}
			if i < len(xi.ports) {
				qs.UMEM = xi.ports[i].Pool().Stats()
				qs.Port, _ = xi.ports[i].Stats()
			}
			if i < len(eps) {
				qs.Endpoint = eps[i]
			}
			is.Queues[xi.queueLabel(i)] = qs
		}
		if xi.steer != nil {
			if qs, other, err := xi.steer.QueueCounters(); err == nil {
				for q, c := range qs {
					is.Steering[strconv.Itoa(q)] = c
				}
				is.Steering["other"] = other
			}
		}
	}
	if x.st != nil {
		for _, d := range x.st.Drops() {
			if s.NetstackDrops[d.Dir] == nil {
				s.NetstackDrops[d.Dir] = map[string]uint64{}
			}
			s.NetstackDrops[d.Dir][d.Reason] = d.Count
		}
	}
	return s
}

// DataPlaneTotals are the figures of a DataPlaneStats that `xdpnet stats`
// and the demo show, summed over interfaces and queues.
type DataPlaneTotals struct {
	Frames, FramesInUse int64
	// Redirected and Passed are the steering program's verdicts.
	Redirected, Passed uint64
	// RxPackets and TxPackets are the AF_XDP sockets'; KernelDrops the
	// frames and descriptors the kernel dropped at them.
	RxPackets, TxPackets, KernelDrops uint64
	// EndpointDrops and NetstackDrops are the drops of every reason.
	EndpointDrops, NetstackDrops uint64
}

// Totals sums s up.
func (s *DataPlaneStats) Totals() DataPlaneTotals {
	var t DataPlaneTotals
	for _, is := range s.Interfaces {
		for _, q := range is.Queues {
			t.Frames += int64(q.UMEM.Frames)
			t.FramesInUse += q.UMEM.InUse
			t.RxPackets += q.Port.RxPackets
			t.TxPackets += q.Port.TxPackets
			k := q.Port.Kernel
			t.KernelDrops += k.RxDropped + k.RxInvalidDescs + k.TxInvalidDescs + k.RxRingFull + k.RxFillRingEmptyDescs
			t.EndpointDrops += q.Endpoint.RXDrops() + q.Endpoint.TXDrops()
		}
		for _, c := range is.Steering {
			t.Redirected += c.Redirected
			t.Passed += c.Passed
		}
	}
	for _, byReason := range s.NetstackDrops {
		for _, n := range byReason {
			t.NetstackDrops += n
		}
	}
	return t
}

// queueLabel is the queue label of endpoint queue i: the NIC's queue id.
func (xi *xdpIf) queueLabel(i int) string {
	if i < len(xi.queueIDs) {
		return strconv.Itoa(xi.queueIDs[i])
	}
	return strconv.Itoa(i)
}
