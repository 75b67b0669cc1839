package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The address plan of DESIGN.md.
var (
	ClientNet4  = netip.MustParsePrefix("198.18.1.0/24")
	ClientNet6  = netip.MustParsePrefix("2001:2:0:1::/64")
	BackendNet4 = netip.MustParsePrefix("198.18.2.0/24")
	BackendNet6 = netip.MustParsePrefix("2001:2:0:2::/64")
)

// Interface names. Each lives in its own namespace, so they repeat across
// labs without clashing.
const (
	EngineClientIf  = "veth-client"  // engine side of the client pair
	EngineBackendIf = "veth-backend" // engine side of the backend pair
	PeerIf          = "veth-engine"  // kernel side, in the client and backend ns
)

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE from <linux/if_link.h>.
const in6AddrGenModeNone = 1

// Limits on Options.
const (
	MaxQueues  = 64
	MaxClients = 200 // .2 .. .201
	MaxServers = 200 // .10 .. .209
)

// Options shapes a Lab. The zero value is a single-queue lab with one client
// address and one backend server address.
type Options struct {
	// Queues is the number of RX and TX queues of every veth (both ends);
	// 0 means 1. Frames a peer sends on its TX queue q arrive on the engine
	// side's RX queue q.
	Queues int
	// PeerTxChecksum leaves the kernel peers' TX checksum offload on. It is
	// off by default: with it on, the peers' TCP and UDP frames carry partial
	// checksums (CHECKSUM_PARTIAL) that AF_XDP does not complete.
	PeerTxChecksum bool
	// Clients is the number of addresses on the client peer, from .2 and ::2
	// up; 0 means 1.
	Clients int
	// Servers is the number of backend server addresses on the backend peer,
	// from .10 and ::10 (hex) up; 0 means 1.
	Servers int
	// EngineKernelAddrs puts a kernel-owned address on each engine-side veth
	// (198.18.1.254 / 2001:2:0:1::fe, 198.18.2.254 / 2001:2:0:2::fe), for
	// tests that traffic not addressed to the engine still reaches the kernel.
	EngineKernelAddrs bool
	// PeerGRO switches GRO on for the kernel peers. A veth without NAPI (no
	// XDP program and GRO off) drops frames redirected or XDP_TX'd into it,
	// such as the live-frames generator's.
	PeerGRO bool
	// EngineGRO switches GRO on for the engine-side veths, for the same reason,
	// when no XDP program is attached there.
	EngineGRO bool
	// EngineNoTxChecksum switches TX checksum offload off on the
	// engine-side veths: the kernel then finishes the checksums of packets
	// sent as CHECKSUM_PARTIAL before they cross the veth, and the peer
	// verifies them, where by default it trusts them unfinished.
	EngineNoTxChecksum bool
	// MTU of every veth; 0 means 1500. Native XDP on a veth refuses an
	// MTU whose frames do not fit in a page with XDP headroom (about 3.5 kB
	// with 4 kB pages).
	MTU int
}

// Link is one veth pair: the engine side in the Engine namespace, the kernel
// peer in the Client or Backend namespace.
type Link struct {
	// Engine side.
	Name   string
	Index  int
	MAC    net.HardwareAddr
	Queues int
	// EngineV4 and EngineV6 are the engine's .1 and ::1. They are NOT
	// configured on the kernel: the engine's netstack owns them.
	EngineV4, EngineV6 netip.Addr
	// KernelV4 and KernelV6 are the engine-ns kernel's own addresses on this
	// veth (.254 and ::fe) with Options.EngineKernelAddrs; invalid otherwise.
	KernelV4, KernelV6 netip.Addr
	// Net4 and Net6 are the pair's subnets.
	Net4, Net6 netip.Prefix

	// Kernel peer side.
	PeerName  string
	PeerIndex int
	PeerMAC   net.HardwareAddr
	// PeerAddrs are the peer's addresses: the IPv4 ones first, then the IPv6
	// ones in the same order (client i or server i is PeerAddrs[i] and
	// PeerAddrs[i+len/2]).
	PeerAddrs []netip.Addr
}

// PeerV4 returns the peer's IPv4 addresses.
func (l Link) PeerV4() []netip.Addr { return l.PeerAddrs[:len(l.PeerAddrs)/2] }

// PeerV6 returns the peer's IPv6 addresses.
func (l Link) PeerV6() []netip.Addr { return l.PeerAddrs[len(l.PeerAddrs)/2:] }

// Lab is a client / engine / backend topology. Close removes it.
type Lab struct {
	Client, Engine, Backend *NS
	ClientLink, BackendLink Link

	closeOnce sync.Once
	closeErr  error
}

var seq atomic.Uint64

// New removes the leftovers of dead runs, then builds a Lab. On error
// nothing of the new Lab remains.
func New(opts Options) (*Lab, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	// Best effort: a leftover that cannot be removed (say, one covered by
	// the bind mount `ip netns add` puts on /run/netns) cannot collide with
	// this lab's names, which carry this process's pid.
	removeLeftovers()
	base := fmt.Sprintf("%s%d-%d-", namePrefix, os.Getpid(), seq.Add(1))
	l := &Lab{}
	var err error
	for _, p := range []struct {
		ns   **NS
		role string
	}{{&l.Client, "client"}, {&l.Engine, "engine"}, {&l.Backend, "backend"}} {
		if *p.ns, err = newNS(base + p.role); err != nil {
			return nil, errors.Join(err, l.Close())
		}
	}
	if err := l.build(opts); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// Close kills the processes started in the Lab's namespaces and removes the
// namespaces. The veth pairs go with them once the last socket or thread in
// them is gone. Close is idempotent.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		var errs []error
		for _, n := range []*NS{l.Client, l.Engine, l.Backend} {
			if n != nil {
				errs = append(errs, n.close())
			}
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// SetLinkUp sets the engine side of link administratively up or down (its
// peer loses carrier with it), for link-down tests.
func (l *Lab) SetLinkUp(link Link, up bool) error {
	h, err := netlink.NewHandleAt(l.Engine.handle)
	if err != nil {
		return fmt.Errorf("lab: netlink in %s: %w", l.Engine.Name, err)
	}
	defer h.Close()
	nl, err := h.LinkByIndex(link.Index)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", link.Name, err)
	}
	if up {
		err = h.LinkSetUp(nl)
	} else {
		err = h.LinkSetDown(nl)
	}
	if err != nil {
		return fmt.Errorf("lab: set %s up=%v: %w", link.Name, up, err)
	}
	return nil
}

func (o *Options) normalize() error {
	def := func(v *int, d, max int, what string) error {
		if *v == 0 {
			*v = d
		}
		if *v < 0 || *v > max {
			return fmt.Errorf("lab: %s %d out of range [1, %d]", what, *v, max)
		}
		return nil
	}
	return errors.Join(
		def(&o.Queues, 1, MaxQueues, "queues"),
		def(&o.Clients, 1, MaxClients, "clients"),
		def(&o.Servers, 1, MaxServers, "servers"),
		def(&o.MTU, 1500, 9000, "mtu"),
	)
}

// side describes one veth pair before it exists.
type side struct {
	peerNS            *NS
	engineIf          string
	engineMAC         net.HardwareAddr
	peerMAC           net.HardwareAddr
	net4, net6        netip.Prefix
	first4, first6    int // host numbers of the first peer address
	count             int // peer addresses
	otherNet4, other6 netip.Prefix
}

func (l *Lab) build(opts Options) error {
	sides := []struct {
		s    side
		link *Link
	}{
		{side{l.Client, EngineClientIf, mac(1, 1), mac(1, 2), ClientNet4, ClientNet6, 2, 2, opts.Clients, BackendNet4, BackendNet6}, &l.ClientLink},
		{side{l.Backend, EngineBackendIf, mac(2, 1), mac(2, 2), BackendNet4, BackendNet6, 10, 0x10, opts.Servers, ClientNet4, ClientNet6}, &l.BackendLink},
	}
	eh, err := netlink.NewHandleAt(l.Engine.handle)
	if err != nil {
		return fmt.Errorf("lab: netlink in %s: %w", l.Engine.Name, err)
	}
	defer eh.Close()
	if err := linkUp(eh, "lo"); err != nil {
		return err
	}
	for _, sd := range sides {
		link, err := l.buildSide(eh, sd.s, opts)
		if err != nil {
			return err
		}
		*sd.link = link
	}
	return nil
}

func (l *Lab) buildSide(eh *netlink.Handle, s side, opts Options) (Link, error) {
	ph, err := netlink.NewHandleAt(s.peerNS.handle)
	if err != nil {
		return Link{}, fmt.Errorf("lab: netlink in %s: %w", s.peerNS.Name, err)
	}
	defer ph.Close()
	if err := linkUp(ph, "lo"); err != nil {
		return Link{}, err
	}
	q := opts.Queues
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:         s.engineIf,
			HardwareAddr: s.engineMAC,
			MTU:          opts.MTU,
			NumTxQueues:  q,
			NumRxQueues:  q,
			TxQLen:       -1,
		},
		PeerName:         PeerIf,
		PeerHardwareAddr: s.peerMAC,
		PeerNamespace:    netlink.NsFd(s.peerNS.handle),
		PeerTxQLen:       -1,
		PeerNumTxQueues:  uint32(q),
		PeerNumRxQueues:  uint32(q),
		PeerMTU:          uint32(opts.MTU),
	}
	if err := eh.LinkAdd(veth); err != nil {
		return Link{}, fmt.Errorf("lab: add veth %s/%s: %w", s.engineIf, PeerIf, err)
	}
	el, err := eh.LinkByName(s.engineIf)
	if err != nil {
		return Link{}, fmt.Errorf("lab: %s: %w", s.engineIf, err)
	}
	pl, err := ph.LinkByName(PeerIf)
	if err != nil {
		return Link{}, fmt.Errorf("lab: %s in %s: %w", PeerIf, s.peerNS.Name, err)
	}

	link := Link{
		Name:      s.engineIf,
		Index:     el.Attrs().Index,
		MAC:       el.Attrs().HardwareAddr,
		Queues:    q,
		EngineV4:  hostAddr(s.net4, 1),
		EngineV6:  hostAddr(s.net6, 1),
		Net4:      s.net4,
		Net6:      s.net6,
		PeerName:  PeerIf,
		PeerIndex: pl.Attrs().Index,
		PeerMAC:   pl.Attrs().HardwareAddr,
	}
	for i := range s.count {
		link.PeerAddrs = append(link.PeerAddrs, hostAddr(s.net4, s.first4+i))
	}
	for i := range s.count {
		link.PeerAddrs = append(link.PeerAddrs, hostAddr(s.net6, s.first6+i))
	}

	// Engine side: its IPv6 belongs to the engine, so the kernel makes no
	// link-local address there (no DAD or router solicitations from it).
	if err := eh.LinkSetIP6AddrGenMode(el, in6AddrGenModeNone); err != nil {
		return Link{}, fmt.Errorf("lab: addrgenmode %s: %w", s.engineIf, err)
	}
	if opts.EngineKernelAddrs {
		link.KernelV4 = hostAddr(s.net4, 254)
		link.KernelV6 = hostAddr(s.net6, 0xfe)
		for _, a := range []netip.Addr{link.KernelV4, link.KernelV6} {
			if err := addAddr(eh, el, a, s.net4, s.net6); err != nil {
				return Link{}, err
			}
		}
	}
	if opts.EngineGRO {
		if err := l.Engine.Do(func() error { return setFeature(s.engineIf, unix.ETHTOOL_SGRO, true) }); err != nil {
			return Link{}, err
		}
	}
	if opts.EngineNoTxChecksum {
		if err := l.Engine.Do(func() error { return setFeature(s.engineIf, unix.ETHTOOL_STXCSUM, false) }); err != nil {
			return Link{}, err
		}
	}
	if err := eh.LinkSetUp(el); err != nil {
		return Link{}, fmt.Errorf("lab: up %s: %w", s.engineIf, err)
	}

	// Kernel peer: DAD off (addresses usable at once), offloads as asked.
	err = s.peerNS.Do(func() error {
		if err := writeSysctl("net/ipv6/conf/"+PeerIf+"/accept_dad", "0"); err != nil {
			return err
		}
		if err := setFeature(PeerIf, unix.ETHTOOL_STXCSUM, opts.PeerTxChecksum); err != nil {
			return err
		}
		if opts.PeerGRO {
			return setFeature(PeerIf, unix.ETHTOOL_SGRO, true)
		}
		return nil
	})
	if err != nil {
		return Link{}, err
	}
	for _, a := range link.PeerAddrs {
		if err := addAddr(ph, pl, a, s.net4, s.net6); err != nil {
			return Link{}, err
		}
	}
	if err := ph.LinkSetUp(pl); err != nil {
		return Link{}, fmt.Errorf("lab: up %s in %s: %w", PeerIf, s.peerNS.Name, err)
	}
	for _, gw := range []netip.Addr{link.EngineV4, link.EngineV6} {
		family := netlink.FAMILY_V4
		if gw.Is6() {
			family = netlink.FAMILY_V6
		}
		n := &netlink.Neigh{
			LinkIndex:    link.PeerIndex,
			Family:       family,
			State:        netlink.NUD_PERMANENT,
			IP:           gw.AsSlice(),
			HardwareAddr: link.MAC,
		}
		if err := ph.NeighAdd(n); err != nil {
			return Link{}, fmt.Errorf("lab: neighbour %s in %s: %w", gw, s.peerNS.Name, err)
		}
	}
	for _, r := range []struct {
		dst netip.Prefix
		gw  netip.Addr
	}{{s.otherNet4, link.EngineV4}, {s.other6, link.EngineV6}} {
		route := &netlink.Route{LinkIndex: link.PeerIndex, Dst: prefixNet(r.dst), Gw: r.gw.AsSlice()}
		if err := ph.RouteAdd(route); err != nil {
			return Link{}, fmt.Errorf("lab: route %s via %s in %s: %w", r.dst, r.gw, s.peerNS.Name, err)
		}
	}
	return link, nil
}

func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("lab: %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("lab: up %s: %w", name, err)
	}
	return nil
}

// addAddr adds a with the prefix length of its subnet, without DAD.
func addAddr(h *netlink.Handle, l netlink.Link, a netip.Addr, net4, net6 netip.Prefix) error {
	bits := net4.Bits()
	if a.Is6() {
		bits = net6.Bits()
	}
	na := &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(a, bits)), Flags: unix.IFA_F_NODAD}
	if err := h.AddrAdd(l, na); err != nil {
		return fmt.Errorf("lab: add %s to %s: %w", a, l.Attrs().Name, err)
	}
	return nil
}

// writeSysctl writes a /proc/sys value; under /proc/sys/net it applies to the
// calling thread's network namespace.
func writeSysctl(key, val string) error {
	if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(val), 0); err != nil {
		return fmt.Errorf("lab: sysctl %s: %w", key, err)
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// hostAddr is host number n in p (n < 256).
func hostAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	b[len(b)-1] = byte(n)
	a, _ := netip.AddrFromSlice(b)
	return a
}

// mac is a locally administered address 02:00:00:00:<net>:<host>, so frames
// in a capture say which end sent them.
func mac(netNum, host byte) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0, 0, 0, netNum, host}
}
