package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/stack"
)

// Plane is the data plane on AF_XDP: per configured interface, the bpf
// steering program sends the frames for the gateway's addresses on each
// dedicated queue to a nic.Port, and one gVisor netstack (package stack)
// terminates TCP and UDP on them. Everything else on those interfaces
// stays with the kernel. There is one worker per dedicated queue.
type Plane struct {
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

	// addrs are the data plane's addresses on the interface; its queues are
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

// New opens every dedicated queue of cfg.Interfaces. On error it releases
// what it opened.
func New(cfg Config, opts Options) (_ *Plane, err error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Do == nil {
		opts.Do = func(fn func() error) error { return fn() }
	}
	st, err := stack.New(stack.Options{TCP: stack.TCPOptions{SendBuffer: cfg.TCPSendBuffer, ReceiveBuffer: cfg.TCPReceiveBuffer}})
	if err != nil {
		return nil, fmt.Errorf("xdp: netstack: %w", err)
	}
	x := &Plane{log: opts.Log, st: st}
	defer func() {
		if err != nil {
			x.Close()
		}
	}()
	for i := range cfg.Interfaces {
		if err := x.openIf(&cfg.Interfaces[i], &cfg.Buffers, cfg.TXWait, opts); err != nil {
			return nil, fmt.Errorf("xdp: interface %s: %w", cfg.Interfaces[i].Name, err)
		}
	}
	return x, nil
}

func (x *Plane) openIf(it *Interface, buf *Buffers, txWait time.Duration, opts Options) error {
	xi := &xdpIf{name: it.Name}
	x.ifs = append(x.ifs, xi)
	var mac net.HardwareAddr
	var mtu int
	maxQ := 0
	for _, q := range it.Queues {
		maxQ = max(maxQ, q)
	}
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
		for _, p := range it.Addresses {
			if err := steer.AddAddr(p.Addr()); err != nil {
				return fmt.Errorf("steer %s: %w", p.Addr(), err)
			}
		}
		if err := steer.Attach(ifc.Index, it.XDPMode); err != nil {
			return fmt.Errorf("attach XDP (%s): %w", it.XDPMode, err)
		}
		for _, q := range it.Queues {
			p, err := nic.Open(nic.Config{
				Ifindex: ifc.Index, Queue: q, Map: steer,
				Frames: buf.Frames, FrameSize: buf.FrameSize,
				RXReserve: buf.Reserve, CacheSize: buf.Cache,
				ZeroCopy: it.ZeroCopy, Logger: x.log, BusyPoll: it.BusyPoll,
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
		MAC: mac, MTU: uint32(mtu), TrustRXChecksum: opts.TrustRXChecksum, TXWait: txWait,
	}, stack.NICOptions{Name: it.Name})
	if err != nil {
		xi.ports = nil // AddXDPNIC took them and closed them
		return fmt.Errorf("add NIC: %w", err)
	}
	xi.ep = ep
	xi.fq = ep
	for _, p := range it.Addresses {
		if err := n.AddAddress(p); err != nil {
			return fmt.Errorf("address %s: %w", p, err)
		}
	}
	if it.Gateway.IsValid() {
		if err := n.SetDefaultGateway(it.Gateway); err != nil {
			return fmt.Errorf("gateway %s: %w", it.Gateway, err)
		}
	}
	if xi.flows, err = installFlowRules(it, opts.Do, x.log); err != nil {
		return err
	}
	for _, p := range it.Addresses {
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

// Name says which stack this is, for logs, metrics and the demo.
func (x *Plane) Name() string { return "xdp+netstack" }

// Workers is the number of workers: one per dedicated queue, numbered over
// the interfaces in configuration order, at least 1.
func (x *Plane) Workers() int { return max(1, x.workers) }

// WorkerFor is the worker of the dedicated queue on
// which the SYN of the TCP connection local <- remote arrived, so that the
// connection's requests are served by the worker whose queue carries its
// packets. false when the interface owning local cannot tell (its flow
// table forgot the SYN).
func (x *Plane) WorkerFor(local, remote netip.AddrPort) (int, bool) {
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

// ListenTCP opens a netstack TCP listener on addr.
func (x *Plane) ListenTCP(addr netip.AddrPort) (net.Listener, error) { return x.st.ListenTCP(addr) }

// ListenUDP opens a netstack UDP socket on addr.
func (x *Plane) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) { return x.st.ListenUDP(addr) }

// BackendPacketConn opens worker w's UDP socket towards backends: a
// netstack UDP socket on an ephemeral port of the data plane's address
// that routes to backend. Every worker gets a socket of its own.
func (x *Plane) BackendPacketConn(_ int, backend netip.Addr) (net.PacketConn, error) {
	src, ok := x.sourceFor(backend)
	if !ok {
		return nil, fmt.Errorf("xdp: no interface address on a route to %s", backend)
	}
	return x.st.ListenUDP(netip.AddrPortFrom(src, 0))
}

// DialBackend opens worker w's UDP socket connected to server: a netstack
// UDP socket on an ephemeral port of the data plane's address that routes
// to server. An unconnected socket's WriteTo resolves the route for every
// datagram; a connected one reuses the route it resolved at connect time
// (and takes the endpoint's UDP fast path both ways).
func (x *Plane) DialBackend(_ int, server netip.AddrPort) (net.Conn, error) {
	src, ok := x.sourceFor(server.Addr())
	if !ok {
		return nil, fmt.Errorf("xdp: no interface address on a route to %s", server.Addr())
	}
	return x.st.DialUDP(netip.AddrPortFrom(src, 0), server)
}

// DialTCP opens a netstack TCP connection to server from the data plane's
// address that routes to it (as DialBackend); ctx bounds the handshake.
// Netstack's TCP dispatcher shards flows, so the worker is not needed.
func (x *Plane) DialTCP(ctx context.Context, _ int, server netip.AddrPort) (net.Conn, error) {
	src, ok := x.sourceFor(server.Addr())
	if !ok {
		return nil, fmt.Errorf("xdp: no interface address on a route to %s", server.Addr())
	}
	return x.st.DialTCPFrom(ctx, netip.AddrPortFrom(src, 0), server)
}

// sourceFor picks the data plane's address on the subnet of dst, else the first
// address of dst's family on an interface with a gateway.
func (x *Plane) sourceFor(dst netip.Addr) (netip.Addr, bool) {
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
func (x *Plane) QUICPacketSize(dst netip.Addr) uint16 {
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

// Close releases the data plane: the sockets opened from it must be
// closed first. The stack closes the endpoints (it stops their
// receive goroutines before netstack's teardown, drains TX and closes the
// ports); ports that never reached an endpoint are closed here, and the
// n-tuple rules and steering programs removed.
func (x *Plane) Close() error {
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
