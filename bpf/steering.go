package bpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// errClosed is wrapped by errors from a closed Steering or Generator.
var errClosed = fmt.Errorf("bpf: closed: %w", net.ErrClosed)

// Mode is how an XDP program is attached to an interface.
type Mode int

const (
	// ModeAuto attaches in native (driver) mode and falls back to generic
	// mode when the driver refuses native XDP.
	ModeAuto Mode = iota
	// ModeNative attaches in the driver's receive path, or fails with an
	// error wrapping ErrNotSupported.
	ModeNative
	// ModeGeneric attaches in the kernel's generic (skb) XDP path, which
	// works on every interface but copies each frame.
	ModeGeneric
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Counters are the steering program's frame counters, summed over CPUs.
// Every frame the program sees is counted in exactly one of them, under the
// queue it arrived on (see QueueCounters).
type Counters struct {
	// Redirected frames were addressed to the engine and handed to the
	// AF_XDP socket of their queue. A full RX ring still drops them later;
	// the socket's XDP statistics count those.
	Redirected uint64
	// Passed frames were not addressed to the engine and went to the kernel.
	Passed uint64
	// NoSocket frames were addressed to the engine but arrived on a queue
	// without a socket; they went to the kernel.
	NoSocket uint64
	// Malformed frames had a truncated or inconsistent header; they went to
	// the kernel, which drops what it cannot parse.
	Malformed uint64
}

// Indexes of the counters map; they mirror enum steer_counter in steer.c.
const (
	counterRedirected = iota
	counterPassed
	counterNoSocket
	counterMalformed
	numCounters
)

// Defaults and limits of SteeringOptions.
const (
	DefaultQueues   = 64
	DefaultMaxAddrs = 256
	MaxQueues       = 1024
)

// SteeringOptions sizes the steering program's maps.
type SteeringOptions struct {
	// Queues is the number of XSKMAP slots: the highest queue index that
	// can get a socket, plus one. 0 means DefaultQueues.
	Queues int
	// MaxAddrs bounds the engine address set. 0 means DefaultMaxAddrs.
	MaxAddrs int
}

// Steering is the steering program loaded for one interface, with its maps.
// Its methods are safe for concurrent use.
type Steering struct {
	objs   steerObjects
	queues int

	mu      sync.Mutex
	link    link.Link // nil until Attach
	mode    Mode      // attached mode, ModeNative or ModeGeneric
	ifindex int
	closed  bool
}

// LoadSteering loads the steering program and creates its maps. It attaches
// nothing: call Attach.
func LoadSteering(opts SteeringOptions) (*Steering, error) {
	if opts.Queues == 0 {
		opts.Queues = DefaultQueues
	}
	if opts.MaxAddrs == 0 {
		opts.MaxAddrs = DefaultMaxAddrs
	}
	if opts.Queues < 1 || opts.Queues > MaxQueues {
		return nil, fmt.Errorf("bpf: steering queues %d out of range [1, %d]", opts.Queues, MaxQueues)
	}
	if opts.MaxAddrs < 1 || opts.MaxAddrs > 1<<16 {
		return nil, fmt.Errorf("bpf: steering max addresses %d out of range [1, 65536]", opts.MaxAddrs)
	}
	spec, err := loadSteer()
	if err != nil {
		return nil, fmt.Errorf("bpf: steering spec: %w", err)
	}
	spec.Maps[steerMapXsks].MaxEntries = uint32(opts.Queues)
	spec.Maps[steerMapAddrs].MaxEntries = uint32(opts.MaxAddrs)
	spec.Maps[steerMapCounters].MaxEntries = uint32(opts.Queues * numCounters)
	s := &Steering{queues: opts.Queues}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, fmt.Errorf("bpf: load steering: %w", err)
	}
	return s, nil
}

// Attach attaches the program to the interface ifindex of the calling
// thread's network namespace through a bpf_link: closing the Steering, or
// the death of the process, detaches it. A Steering attaches to one
// interface, once.
func (s *Steering) Attach(ifindex int, mode Mode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("bpf: attach steering: %w", errClosed)
	case s.link != nil:
		return fmt.Errorf("bpf: steering already attached to ifindex %d", s.ifindex)
	}
	var (
		l   link.Link
		err error
	)
	switch mode {
	case ModeNative, ModeGeneric:
		l, err = attachXDP(s.objs.XdpnetSteer, ifindex, mode)
	case ModeAuto:
		mode = ModeNative
		l, err = attachXDP(s.objs.XdpnetSteer, ifindex, mode)
		if err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EEXIST) {
			nativeErr := err
			mode = ModeGeneric
			l, err = attachXDP(s.objs.XdpnetSteer, ifindex, mode)
			if err != nil {
				err = errors.Join(nativeErr, err)
			}
		}
	default:
		return fmt.Errorf("bpf: attach steering: unknown %v", mode)
	}
	if err != nil {
		return err
	}
	s.link, s.mode, s.ifindex = l, mode, ifindex
	return nil
}

// attachXDP attaches prog to ifindex in mode (ModeNative or ModeGeneric).
func attachXDP(prog *ebpf.Program, ifindex int, mode Mode) (link.Link, error) {
	flags := link.XDPDriverMode
	if mode == ModeGeneric {
		flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, ErrNotSupported) {
			err = fmt.Errorf("%w: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("bpf: attach XDP (%v) to ifindex %d: %w", mode, ifindex, err)
	}
	return l, nil
}

// Mode returns the mode the program is attached in (ModeNative or
// ModeGeneric), or ModeAuto when it is not attached.
func (s *Steering) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.link == nil {
		return ModeAuto
	}
	return s.mode
}

// SetSocket steers queue's engine frames to the AF_XDP socket fd, which must
// be bound to that queue of the attached interface.
func (s *Steering) SetSocket(queue, fd int) error {
	if queue < 0 || queue >= s.queues {
		return fmt.Errorf("bpf: queue %d outside the %d XSKMAP slots", queue, s.queues)
	}
	if err := s.objs.Xsks.Update(uint32(queue), uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: set socket for queue %d: %w", queue, err)
	}
	return nil
}

// DeleteSocket removes queue's socket: its engine frames go to the kernel
// (counted as NoSocket) until SetSocket. Deleting an empty slot is not an
// error, so closing paths may call it unconditionally.
func (s *Steering) DeleteSocket(queue int) error {
	if queue < 0 || queue >= s.queues {
		return fmt.Errorf("bpf: queue %d outside the %d XSKMAP slots", queue, s.queues)
	}
	if err := s.objs.Xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: delete socket for queue %d: %w", queue, err)
	}
	return nil
}

func addrKey(a netip.Addr) steerAddrKey {
	a = a.WithZone("")
	k := steerAddrKey{Family: 6}
	if a.Unmap().Is4() {
		k.Family = 4
		a = netip.AddrFrom16(a.Unmap().As16())
	}
	k.Addr = a.As16()
	return k
}

// AddAddr adds an engine address; frames to it are steered from then on.
// IPv4-mapped IPv6 addresses are taken as IPv4, and a zone is ignored (the
// program serves one interface). Adding a present address is not an error.
func (s *Steering) AddAddr(a netip.Addr) error {
	if !a.IsValid() {
		return fmt.Errorf("bpf: add engine address: invalid address")
	}
	if err := s.objs.Addrs.Update(addrKey(a), uint8(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: add engine address %v: %w", a, err)
	}
	return nil
}

// RemoveAddr removes an engine address; frames to it go to the kernel from
// then on. Removing an absent address is not an error.
func (s *Steering) RemoveAddr(a netip.Addr) error {
	if err := s.objs.Addrs.Delete(addrKey(a)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: remove engine address %v: %w", a, err)
	}
	return nil
}

// Addrs returns the engine address set, in no particular order.
func (s *Steering) Addrs() ([]netip.Addr, error) {
	var (
		k   steerAddrKey
		v   uint8
		out []netip.Addr
	)
	it := s.objs.Addrs.Iterate()
	for it.Next(&k, &v) {
		a := netip.AddrFrom16(k.Addr)
		if k.Family == 4 {
			a = a.Unmap()
		}
		out = append(out, a)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("bpf: list engine addresses: %w", err)
	}
	return out, nil
}

// Counters sums the per-CPU frame counters over all queues.
func (s *Steering) Counters() (Counters, error) {
	qs, other, err := s.QueueCounters()
	if err != nil {
		return Counters{}, err
	}
	for _, q := range qs {
		other.add(q)
	}
	return other, nil
}

// QueueCounters returns the frame counters of each queue the program has
// XSKMAP slots for (SteeringOptions.Queues), indexed by queue, dedicated
// to the engine or not, and in other those of frames that arrived on
// higher queues.
func (s *Steering) QueueCounters() (queues []Counters, other Counters, err error) {
	queues = make([]Counters, s.queues)
	for q := range queues {
		if err := readCounters(s.objs.Counters, uint32(q*numCounters), &queues[q]); err != nil {
			return nil, Counters{}, fmt.Errorf("bpf: read steering counters of queue %d: %w", q, err)
		}
	}
	if err := readCounters(s.objs.OtherQueueCounters, 0, &other); err != nil {
		return nil, Counters{}, fmt.Errorf("bpf: read steering counters of other queues: %w", err)
	}
	return queues, other, nil
}

// readCounters sums the per-CPU values of the numCounters entries of m
// from first into c.
func readCounters(m *ebpf.Map, first uint32, c *Counters) error {
	dst := []*uint64{&c.Redirected, &c.Passed, &c.NoSocket, &c.Malformed}
	var perCPU []uint64
	for i := range uint32(numCounters) {
		if err := m.Lookup(first+i, &perCPU); err != nil {
			return err
		}
		for _, v := range perCPU {
			*dst[i] += v
		}
	}
	return nil
}

func (c *Counters) add(o Counters) {
	c.Redirected += o.Redirected
	c.Passed += o.Passed
	c.NoSocket += o.NoSocket
	c.Malformed += o.Malformed
}

// Close detaches the program and releases it and its maps. The kernel frees
// them once no other reference (an AF_XDP socket in the XSKMAP holds none
// on the program) is left. Close is idempotent.
func (s *Steering) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.link != nil {
		if err := s.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("bpf: detach steering: %w", err))
		}
		s.link = nil
	}
	if err := s.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bpf: close steering objects: %w", err))
	}
	return errors.Join(errs...)
}
