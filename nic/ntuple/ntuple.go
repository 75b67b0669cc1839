package ntuple

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bpf"
)

// Proto is the transport protocol a rule matches.
type Proto uint8

const (
	UDP Proto = iota
	TCP
)

func (p Proto) String() string {
	switch p {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	}
	return fmt.Sprintf("Proto(%d)", uint8(p))
}

// Rule steers the frames of one destination (address, optionally port) to
// one receive queue.
type Rule struct {
	Proto Proto
	// Dst is the destination address, IPv4 or IPv6.
	Dst netip.Addr
	// DstPort is the destination port; 0 matches every port.
	DstPort uint16
	// Queue is the receive queue the frames go to.
	Queue int
}

func (r Rule) String() string {
	port := "any"
	if r.DstPort != 0 {
		port = fmt.Sprint(r.DstPort)
	}
	return fmt.Sprintf("%s dst %s port %s -> queue %d", r.Proto, r.Dst, port, r.Queue)
}

// Rules are the rules Install put on one interface.
type Rules struct {
	ifname string

	mu      sync.Mutex
	locs    []uint32 // driver-chosen rule locations, in install order
	removed bool
}

// Install inserts rules on the interface ifname of the calling thread's
// network namespace, letting the driver choose each rule's location. If one
// fails, the ones already inserted are removed and the error returned
// (wrapping bpf.ErrNotSupported when the driver has no flow steering).
func Install(ifname string, rules []Rule) (*Rules, error) {
	rs := &Rules{ifname: ifname}
	for _, r := range rules {
		buf, err := encodeInsert(r)
		if err != nil {
			return nil, errors.Join(err, rs.Remove())
		}
		if err := ethtool(ifname, buf); err != nil {
			return nil, errors.Join(fmt.Errorf("ntuple: insert %v on %s: %w", r, ifname, wrapErrno(err)), rs.Remove())
		}
		rs.locs = append(rs.locs, binary.NativeEndian.Uint32(buf[offFS+offLocation:]))
	}
	return rs, nil
}

// Locations returns where the driver put the rules.
func (rs *Rules) Locations() []uint32 {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]uint32(nil), rs.locs...)
}

// Remove deletes the rules; it is idempotent. It tries every rule and
// returns the errors joined.
func (rs *Rules) Remove() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.removed {
		return nil
	}
	rs.removed = true
	var errs []error
	for _, loc := range rs.locs {
		if err := ethtool(rs.ifname, encodeLoc(unix.ETHTOOL_SRXCLSRLDEL, loc)); err != nil {
			errs = append(errs, fmt.Errorf("ntuple: delete rule %d on %s: %w", loc, rs.ifname, wrapErrno(err)))
		}
	}
	return errors.Join(errs...)
}

// Get reads the rule at location loc of ifname back from the driver.
// A location without a rule gives an error wrapping unix.ENOENT.
func Get(ifname string, loc uint32) (Rule, error) {
	buf := encodeLoc(unix.ETHTOOL_GRXCLSRULE, loc)
	if err := ethtool(ifname, buf); err != nil {
		return Rule{}, fmt.Errorf("ntuple: get rule %d on %s: %w", loc, ifname, wrapErrno(err))
	}
	return decode(buf)
}

// Count returns how many classification rules ifname holds, whoever
// installed them (what `ethtool -n` counts).
func Count(ifname string) (int, error) {
	buf := encodeLoc(unix.ETHTOOL_GRXCLSRLCNT, 0)
	if err := ethtool(ifname, buf); err != nil {
		return 0, fmt.Errorf("ntuple: count rules on %s: %w", ifname, wrapErrno(err))
	}
	return int(binary.NativeEndian.Uint32(buf[offRuleCnt:])), nil
}

func wrapErrno(err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%w (no flow steering: %w)", err, bpf.ErrNotSupported)
	}
	return err
}

// Layout of struct ethtool_rxnfc and struct ethtool_rx_flow_spec
// (<linux/ethtool.h>, checked with offsetof on x86-64 and arm64).
const (
	rxnfcSize  = 192
	offFS      = 16  // ethtool_rxnfc.fs
	offRuleCnt = 184 // ethtool_rxnfc.rule_cnt
	// Within ethtool_rx_flow_spec:
	offFlowType   = 0
	offHU         = 4  // h_u: the values
	offMU         = 76 // m_u: the bits to match
	offRingCookie = 152
	offLocation   = 160

	// Within ethtool_tcpip4_spec and ethtool_tcpip6_spec.
	off4Dst, off4DstPort = 4, 10
	off6Dst, off6DstPort = 16, 34

	tcpV4Flow, udpV4Flow = 0x01, 0x02
	tcpV6Flow, udpV6Flow = 0x05, 0x06

	// rxClsLocAny lets the driver choose the location (RX_CLS_LOC_ANY).
	rxClsLocAny = 0xffffffff
)

func encodeInsert(r Rule) ([]byte, error) {
	if !r.Dst.IsValid() {
		return nil, errors.New("ntuple: rule without destination address")
	}
	if r.Queue < 0 {
		return nil, fmt.Errorf("ntuple: queue %d", r.Queue)
	}
	if r.Proto != UDP && r.Proto != TCP {
		return nil, fmt.Errorf("ntuple: %v", r.Proto)
	}
	b := make([]byte, rxnfcSize)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], unix.ETHTOOL_SRXCLSRLINS)
	fs := b[offFS:]
	hu, mu := fs[offHU:offMU], fs[offMU:]
	var flow uint32
	dst := r.Dst.Unmap()
	if dst.Is4() {
		flow = udpV4Flow
		if r.Proto == TCP {
			flow = tcpV4Flow
		}
		a := dst.As4()
		copy(hu[off4Dst:], a[:])
		copy(mu[off4Dst:off4Dst+4], []byte{0xff, 0xff, 0xff, 0xff})
		if r.DstPort != 0 {
			binary.BigEndian.PutUint16(hu[off4DstPort:], r.DstPort)
			binary.BigEndian.PutUint16(mu[off4DstPort:], 0xffff)
		}
	} else {
		flow = udpV6Flow
		if r.Proto == TCP {
			flow = tcpV6Flow
		}
		a := dst.As16()
		copy(hu[off6Dst:], a[:])
		for i := range 16 {
			mu[off6Dst+i] = 0xff
		}
		if r.DstPort != 0 {
			binary.BigEndian.PutUint16(hu[off6DstPort:], r.DstPort)
			binary.BigEndian.PutUint16(mu[off6DstPort:], 0xffff)
		}
	}
	ne.PutUint32(fs[offFlowType:], flow)
	ne.PutUint64(fs[offRingCookie:], uint64(r.Queue))
	ne.PutUint32(fs[offLocation:], rxClsLocAny)
	return b, nil
}

// encodeLoc builds a request naming one rule location (get, delete).
func encodeLoc(cmd uint32, loc uint32) []byte {
	b := make([]byte, rxnfcSize)
	binary.NativeEndian.PutUint32(b[0:], cmd)
	binary.NativeEndian.PutUint32(b[offFS+offLocation:], loc)
	return b
}

// decode reads a rule back from a struct ethtool_rxnfc. Only the shapes
// Install writes are understood.
func decode(b []byte) (Rule, error) {
	if len(b) < rxnfcSize {
		return Rule{}, errors.New("ntuple: short rxnfc")
	}
	ne := binary.NativeEndian
	fs := b[offFS:]
	hu := fs[offHU:offMU]
	var r Rule
	switch ne.Uint32(fs[offFlowType:]) &^ 0xff000000 { // FLOW_EXT, FLOW_MAC_EXT, FLOW_RSS flags
	case udpV4Flow, tcpV4Flow:
		r.Dst = netip.AddrFrom4([4]byte(hu[off4Dst : off4Dst+4]))
		r.DstPort = binary.BigEndian.Uint16(hu[off4DstPort:])
		if ne.Uint32(fs[offFlowType:])&0xff == tcpV4Flow {
			r.Proto = TCP
		}
	case udpV6Flow, tcpV6Flow:
		r.Dst = netip.AddrFrom16([16]byte(hu[off6Dst : off6Dst+16]))
		r.DstPort = binary.BigEndian.Uint16(hu[off6DstPort:])
		if ne.Uint32(fs[offFlowType:])&0xff == tcpV6Flow {
			r.Proto = TCP
		}
	default:
		return Rule{}, fmt.Errorf("ntuple: flow type %#x not written by this package", ne.Uint32(fs[offFlowType:]))
	}
	r.Queue = int(uint32(ne.Uint64(fs[offRingCookie:])))
	return r, nil
}
