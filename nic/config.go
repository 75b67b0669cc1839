package nic

import (
	"fmt"
	"log/slog"
	"math/bits"
	"time"
)

// ZeroCopy chooses between the kernel's copy mode and driver zero-copy.
type ZeroCopy int

const (
	// ZeroCopyAuto asks for zero-copy and falls back to copy mode when the
	// driver has none (veth, for one). The fallback is logged and counted
	// (Stats.ZeroCopyFallback, Port.FallbackReason).
	ZeroCopyAuto ZeroCopy = iota
	// ZeroCopyOff binds in copy mode (XDP_COPY).
	ZeroCopyOff
	// ZeroCopyForce binds in zero-copy mode (XDP_ZEROCOPY) or fails with an
	// error wrapping ErrNotSupported.
	ZeroCopyForce
)

func (z ZeroCopy) String() string {
	switch z {
	case ZeroCopyAuto:
		return "auto"
	case ZeroCopyOff:
		return "copy"
	case ZeroCopyForce:
		return "zerocopy"
	}
	return fmt.Sprintf("ZeroCopy(%d)", int(z))
}

// SocketMap is the XSKMAP of the XDP program that steers the queue's frames
// to the socket; *bpf.Steering implements it. Open inserts the socket after
// binding it, Close deletes it before releasing the socket.
type SocketMap interface {
	SetSocket(queue int, fd int) error
	DeleteSocket(queue int) error
}

// Config describes one Port. Zero fields take the defaults listed.
type Config struct {
	// Ifindex and Queue name the interface queue to bind, in the network
	// namespace of the thread that calls Open.
	Ifindex int
	Queue   int

	// Map, if not nil, gets the socket for Queue on Open and loses it on
	// Close. Without it the caller steers frames to FD() itself.
	Map SocketMap

	// Frames is the number of UMEM frames (default 16384) and FrameSize
	// their size, a power of two from 2048 to the page size (default 2048).
	Frames    int
	FrameSize int
	// RXReserve is the number of frames kept for the fill ring that TX
	// allocations cannot take (default FillSize/2), so a burst of
	// transmissions never starves reception.
	RXReserve int
	// CacheSize is the per-side frame cache size of the bufring pool
	// (default 256).
	CacheSize int

	// Ring sizes in descriptors, powers of two (defaults: fill and RX 4096,
	// TX and completion 2048). The fill ring is what absorbs the time the
	// receiving goroutine is not scheduled: at 1 Mpps, 4096 entries last
	// 4 ms before the kernel drops for want of a frame.
	FillSize, CompSize, RXSize, TXSize int

	// ZeroCopy picks copy or zero-copy mode (default ZeroCopyAuto).
	ZeroCopy ZeroCopy
	// NoNeedWakeup binds without XDP_USE_NEED_WAKEUP: every Transmit then
	// kicks the kernel, and RX refills never do. For comparisons only.
	NoNeedWakeup bool

	// BusyPoll is how long Wait spins on the RX ring before it sleeps in
	// poll(2). Zero sleeps at once, which costs a wake-up per batch but no
	// idle CPU; a few tens of microseconds trade a core for latency.
	BusyPoll time.Duration

	// BindRetry bounds the retries of a bind that fails with EBUSY because
	// a socket closed a moment ago still holds the queue (default 1s).
	BindRetry time.Duration

	// Logger receives the rare events (zero-copy fallback, bind retries).
	// Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultFrames    = 16384
	defaultFrameSize = 2048
	defaultRXRing    = 4096
	defaultTXRing    = 2048
	defaultCache     = 256
	defaultBindRetry = time.Second
)

func (c *Config) normalize(pageSize int) error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Frames, defaultFrames)
	def(&c.FrameSize, defaultFrameSize)
	def(&c.CacheSize, defaultCache)
	def(&c.FillSize, defaultRXRing)
	def(&c.CompSize, defaultTXRing)
	def(&c.RXSize, defaultRXRing)
	def(&c.TXSize, defaultTXRing)
	def(&c.RXReserve, c.FillSize/2)
	if c.BindRetry == 0 {
		c.BindRetry = defaultBindRetry
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Ifindex <= 0 {
		return fmt.Errorf("nic: config: ifindex %d", c.Ifindex)
	}
	if c.Queue < 0 {
		return fmt.Errorf("nic: config: queue %d", c.Queue)
	}
	if !pow2(c.FrameSize) || c.FrameSize < 2048 || c.FrameSize > pageSize {
		return fmt.Errorf("nic: config: frame size %d: want a power of two in [2048, %d]", c.FrameSize, pageSize)
	}
	for _, r := range []struct {
		name string
		v    int
	}{{"fill", c.FillSize}, {"completion", c.CompSize}, {"rx", c.RXSize}, {"tx", c.TXSize}} {
		if !pow2(r.v) || r.v > 1<<20 {
			return fmt.Errorf("nic: config: %s ring size %d: want a power of two up to 1<<20", r.name, r.v)
		}
	}
	if c.Frames < c.FillSize || c.Frames > 1<<24 {
		return fmt.Errorf("nic: config: %d frames: want at least the fill ring size %d and at most 1<<24", c.Frames, c.FillSize)
	}
	if c.RXReserve < 0 || c.RXReserve > c.Frames {
		return fmt.Errorf("nic: config: rx reserve %d of %d frames", c.RXReserve, c.Frames)
	}
	if c.ZeroCopy < ZeroCopyAuto || c.ZeroCopy > ZeroCopyForce {
		return fmt.Errorf("nic: config: %v", c.ZeroCopy)
	}
	if c.BusyPoll < 0 || c.BindRetry < 0 {
		return fmt.Errorf("nic: config: negative duration")
	}
	return nil
}

func pow2(v int) bool { return v > 0 && bits.OnesCount(uint(v)) == 1 }
