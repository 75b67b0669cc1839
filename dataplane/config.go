package dataplane

import (
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/stack"
)

// Config is what the data plane runs: the interfaces whose queues it owns
// and the UMEM buffers of each queue. The caller validates it (the engine
// from its configuration file); New takes it as it is.
type Config struct {
	Interfaces []Interface
	Buffers    Buffers
	// TCPSendBuffer and TCPReceiveBuffer bound netstack's per-connection
	// TCP buffers (zero fields: the stack package's defaults).
	TCPSendBuffer, TCPReceiveBuffer stack.BufferRange
	// TXWait bounds how long a send waits for a free frame or TX ring
	// room before it drops (stack.EndpointOptions.TXWait; 0: its default).
	TXWait time.Duration
}

// Interface is one NIC whose dedicated queues the data plane owns.
type Interface struct {
	Name string
	// Queues are the dedicated queue ids; one worker serves each.
	Queues []int
	// XDPMode is how the steering program attaches.
	XDPMode bpf.Mode
	// ZeroCopy is the ports' zero-copy mode.
	ZeroCopy nic.ZeroCopy
	// NTuple says whether n-tuple rules steer the addresses' flows to
	// Queues (see NTuple).
	NTuple NTuple
	// Addresses are owned by the netstack (not the kernel), with prefix.
	Addresses []netip.Prefix
	// Gateway, if valid, is the default route via this interface.
	Gateway netip.Addr
	// BusyPoll is how long a queue spins on its RX ring before parking.
	BusyPoll time.Duration
}

// Buffers size each queue's UMEM (see nic.Config).
type Buffers struct {
	Frames    int // frames per port (power of two)
	FrameSize int // bytes per frame
	Cache     int // per-worker cache
	Reserve   int // RX reserve
}

// NTuple says whether New installs ethtool n-tuple rules steering UDP and
// TCP to each of an interface's addresses to its dedicated queues, and
// removes them on Close.
type NTuple int

const (
	// NTupleAuto installs the rules, and runs on without them when the
	// driver has no flow steering (veth).
	NTupleAuto NTuple = iota
	// NTupleOff installs none: RSS spreads the flows.
	NTupleOff
	// NTupleOn installs them; a driver without flow steering is an error.
	NTupleOn
)

func (n NTuple) String() string {
	switch n {
	case NTupleAuto:
		return "auto"
	case NTupleOff:
		return "off"
	case NTupleOn:
		return "on"
	}
	return "NTuple(" + strconv.Itoa(int(n)) + ")"
}

// Options are the run-time surroundings of New, apart from the
// configuration.
type Options struct {
	// Do runs set-up that must happen inside the interfaces' network
	// namespace (nic.Open, XDP attach, n-tuple rules); nil runs it on the
	// calling thread.
	Do func(func() error) error
	// TrustRXChecksum accepts frames whose checksums the NIC did not verify
	// (a lab whose kernel peers keep TX checksum offload on).
	TrustRXChecksum bool
	// Log receives set-up events; nil uses slog.Default().
	Log *slog.Logger
}
