package nic

import (
	"fmt"
	"log/slog"
	"math/bits"
	"time"

	"golang.org/x/sys/unix"
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
	//
	// The frames are shared between reception and transmission. Reception
	// may hold up to FillFrames in the kernel, RXReserve more kept free
	// for it, and CacheSize in its frame cache; the rest,
	//
	//	Frames - FillFrames - RXReserve - CacheSize,
	//
	// is always left to Alloc (less what the caller itself holds). Open
	// refuses a Config that leaves fewer than min(TXSize, 256).
	Frames    int
	FrameSize int
	// FillFrames is the most frames the port lends the kernel for
	// reception: posted on the fill ring, or holding received packets
	// that Receive has not taken yet (default: the smaller of
	// FillSize+RXSize, a full fill ring plus a full RX ring of backlog,
	// and Frames/2). Frames lent to the kernel return only as packets
	// arrive, so a fill path that posted every free frame could keep
	// them all on a quiet queue and leave Alloc nothing for as long as
	// the queue stays quiet. The fill ring is topped up to FillSize or to
	// what the budget leaves, whichever is smaller.
	FillFrames int
	// RXReserve is the number of frames kept for the fill ring that TX
	// allocations cannot take (default half of FillSize or FillFrames,
	// whichever is smaller; a larger value is cut to FillFrames, as
	// reception never holds more), so a burst of transmissions never
	// starves reception.
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
	// NoTxChecksum registers the UMEM without TX metadata, so TxChecksum
	// always reports false and callers compute checksums themselves. For
	// comparisons only.
	NoTxChecksum bool

	// BusyPoll is how long Wait spins on the RX ring before it parks in the
	// runtime poller. Zero sleeps at once, which costs a wake-up per batch but no
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

	// minTXFrames is the fewest frames a Config may leave to transmission
	// (or TXSize if smaller): a batch of Alloc, and room for the frames of
	// a whole GSO segment that package stack builds before it transmits.
	minTXFrames = batch
)

// CheckBuffers reports whether Open would accept c's UMEM and ring sizes
// (Frames, FrameSize, FillFrames, RXReserve, CacheSize and the four ring
// sizes, zero fields taking their defaults), without opening anything, so
// that a configuration can be refused before any port is opened. The other
// fields are not looked at.
func (c Config) CheckBuffers() error {
	c.defaults()
	return c.checkBuffers(unix.Getpagesize())
}

func (c *Config) normalize(pageSize int) error {
	c.defaults()
	if c.Ifindex <= 0 {
		return fmt.Errorf("nic: config: ifindex %d", c.Ifindex)
	}
	if c.Queue < 0 {
		return fmt.Errorf("nic: config: queue %d", c.Queue)
	}
	if err := c.checkBuffers(pageSize); err != nil {
		return err
	}
	if c.ZeroCopy < ZeroCopyAuto || c.ZeroCopy > ZeroCopyForce {
		return fmt.Errorf("nic: config: %v", c.ZeroCopy)
	}
	if c.BusyPoll < 0 || c.BindRetry < 0 {
		return fmt.Errorf("nic: config: negative duration")
	}
	return nil
}

func (c *Config) defaults() {
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
	def(&c.FillFrames, min(c.FillSize+c.RXSize, c.Frames/2))
	def(&c.RXReserve, min(c.FillSize, c.FillFrames)/2)
	c.RXReserve = min(c.RXReserve, c.FillFrames)
	if c.BindRetry == 0 {
		c.BindRetry = defaultBindRetry
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) checkBuffers(pageSize int) error {
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
	if c.Frames <= 0 || c.Frames > 1<<24 {
		return fmt.Errorf("nic: config: Frames %d: want 1 to 1<<24", c.Frames)
	}
	if c.FillFrames <= 0 || c.FillFrames > c.FillSize+c.RXSize {
		return fmt.Errorf("nic: config: FillFrames %d: want 1 to FillSize+RXSize (%d)", c.FillFrames, c.FillSize+c.RXSize)
	}
	if c.RXReserve < 0 || c.CacheSize <= 0 {
		return fmt.Errorf("nic: config: RXReserve %d, CacheSize %d: want RXReserve >= 0 and CacheSize > 0", c.RXReserve, c.CacheSize)
	}
	if left, want := c.Frames-c.FillFrames-c.RXReserve-c.CacheSize, min(c.TXSize, minTXFrames); left < want {
		return fmt.Errorf("nic: config: Frames %d too few: reception may hold FillFrames %d + RXReserve %d + CacheSize %d, leaving %d to transmit, want at least %d (TXSize or %d, whichever is smaller); raise Frames or lower FillFrames",
			c.Frames, c.FillFrames, c.RXReserve, c.CacheSize, left, want, minTXFrames)
	}
	return nil
}

func pow2(v int) bool { return v > 0 && bits.OnesCount(uint(v)) == 1 }
