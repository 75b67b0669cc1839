package bufring

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
)

// FrameConfig describes how a UMEM region is cut into frames.
type FrameConfig struct {
	// Frames is the number of frames; frame i lives at offset i*FrameSize.
	Frames int
	// FrameSize is the size of one frame in bytes (AF_XDP: 2048 or 4096).
	FrameSize int
	// Reserve is the number of frames only the RX fill path may take (GetRX,
	// Wait with ClassRX), so a busy TX or application side cannot starve
	// receive. 0 <= Reserve < Frames.
	Reserve int
	// CacheSize is the capacity of each per-worker Cache; 0 means 256 or
	// Frames/4 if that is smaller (at least 1).
	CacheSize int
	// Batch is how many frames a Cache moves to or from the shared ring at a
	// time; 0 means CacheSize/2 (at least 1). Batch <= CacheSize.
	Batch int
	// Region, if set, is the UMEM memory (at least Frames*FrameSize bytes);
	// it lets Frame return a frame's bytes. The pool never reads or writes
	// it and does not own it: whoever mapped it unmaps it after Close.
	Region []byte
}

func (cfg *FrameConfig) setDefaults() error {
	if cfg.Frames <= 0 || cfg.FrameSize <= 0 {
		return fmt.Errorf("%w: Frames %d and FrameSize %d must be positive", ErrConfig, cfg.Frames, cfg.FrameSize)
	}
	if uint64(cfg.Frames) > 1<<32 || uint64(cfg.FrameSize) > 1<<24 {
		return fmt.Errorf("%w: Frames %d or FrameSize %d too large", ErrConfig, cfg.Frames, cfg.FrameSize)
	}
	if cfg.Reserve < 0 || cfg.Reserve >= cfg.Frames {
		return fmt.Errorf("%w: Reserve %d must be in [0, Frames=%d)", ErrConfig, cfg.Reserve, cfg.Frames)
	}
	if cfg.CacheSize < 0 || cfg.Batch < 0 {
		return fmt.Errorf("%w: negative CacheSize %d or Batch %d", ErrConfig, cfg.CacheSize, cfg.Batch)
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = max(1, min(256, cfg.Frames/4))
	}
	if cfg.Batch == 0 {
		cfg.Batch = max(1, cfg.CacheSize/2)
	}
	if cfg.Batch > cfg.CacheSize {
		return fmt.Errorf("%w: Batch %d larger than CacheSize %d", ErrConfig, cfg.Batch, cfg.CacheSize)
	}
	if cfg.Region != nil && len(cfg.Region) < cfg.Frames*cfg.FrameSize {
		return fmt.Errorf("%w: Region of %d bytes smaller than %d frames of %d", ErrConfig, len(cfg.Region), cfg.Frames, cfg.FrameSize)
	}
	return nil
}

// FramePool hands out the frames of one UMEM region, identified by their
// offsets (addresses), to any number of goroutines without locks.
//
// Free frames live in a shared lock-free Ring, in the RX reserve (a second
// ring) and in per-worker Caches. A frame is owned by exactly one party at a
// time: the pool, or the user who got it from a Cache until that user (or
// anyone it handed the frame to, on any worker) releases it with Put or
// PutBatch on any Cache of the same pool.
//
// Releases are routed in this order: RX-class waiters, then the RX reserve if
// it is below its level, then other waiters (most critical class first,
// oldest first), then the releasing cache or the shared ring.
type FramePool struct {
	// Read-only after construction.
	cfg  FrameConfig
	main *Ring // free frames anyone may take
	rsv  *Ring // the RX reserve
	dbg  *tracker
	_    [cacheLine]byte

	// Read on every Put, written only when waiters come and go or the
	// reserve drops below its level, so the line stays shared in steady state.
	nwait   atomic.Int64 // waiters queued
	deficit atomic.Int64 // Reserve minus frames in rsv, minus refills in flight
	_       [cacheLine - 16]byte

	wq waitQueue

	// Slow-path statistics.
	highWater atomic.Int64
	rsvTaken  atomic.Uint64
	waits     atomic.Uint64
	waitFails atomic.Uint64
	handoffs  atomic.Uint64
	passedOn  atomic.Uint64
	overflows atomic.Uint64
	hist      [len(WaitBuckets) + 1]atomic.Uint64

	// waitCancelledHook, nil but in a test, runs in wait between noticing
	// the end of the context and leaving the queue: the window of the
	// cancel/hand-off race. A test sets it before the context ends.
	waitCancelledHook func()

	// mu guards the cache registry (NewCache, Cache.Close, Stats).
	mu      sync.Mutex
	caches  map[*Cache]struct{}
	retired cacheCounters // counters of closed caches
}

// NewFramePool returns a pool holding every frame of cfg: the first
// cfg.Reserve frames in the RX reserve, the rest in the shared ring.
func NewFramePool(cfg FrameConfig) (*FramePool, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	// The rings get at least twice as many slots as they can ever hold
	// frames. A ring sized to its contents is always nearly full, so a
	// release lands right on the slots a concurrent Get has claimed and
	// not yet freed, and if that goroutine is descheduled the release must
	// retry until it runs again. With the slack a release trails the
	// oldest in-flight pop by a whole pool's worth of positions. (An A/B
	// run of BenchmarkSharedRingContended showed no throughput difference
	// either way; this is for liveness under preemption, not speed.)
	main, err := NewRing(1 << bits.Len(uint(2*cfg.Frames-1)))
	if err != nil {
		return nil, err
	}
	rsv, err := NewRing(1 << bits.Len(uint(2*max(cfg.Reserve, 1)-1)))
	if err != nil {
		return nil, err
	}
	p := &FramePool{cfg: cfg, main: main, rsv: rsv, caches: make(map[*Cache]struct{})}
	if debug {
		p.dbg = newTracker(cfg.Frames, cfg.FrameSize)
	}
	for i := range cfg.Frames {
		addr := uint64(i) * uint64(cfg.FrameSize)
		r := p.main
		if i < cfg.Reserve {
			r = p.rsv
		}
		if !r.Push(addr) {
			panic("bufring: ring sized below frame count") // unreachable: rings are sized above
		}
	}
	return p, nil
}

// Config returns the configuration of p with defaults filled in.
func (p *FramePool) Config() FrameConfig { return p.cfg }

// Frame returns the bytes of the frame at addr, or nil if the pool was built
// without a Region. addr must be a frame address of p.
func (p *FramePool) Frame(addr uint64) []byte {
	if p.cfg.Region == nil {
		return nil
	}
	return p.cfg.Region[addr : addr+uint64(p.cfg.FrameSize) : addr+uint64(p.cfg.FrameSize)]
}

// Contains reports whether addr is the address of one of p's frames.
func (p *FramePool) Contains(addr uint64) bool {
	fs := uint64(p.cfg.FrameSize)
	return addr%fs == 0 && addr/fs < uint64(p.cfg.Frames)
}

// needSlow reports whether a release must take the slow path because someone
// waits for frames or the RX reserve is below its level.
func (p *FramePool) needSlow() bool {
	return p.nwait.Load() != 0 || p.deficit.Load() > 0
}

// release returns frames that leave their cache to waiters, the reserve or
// the shared ring. It does not retain vs.
func (p *FramePool) release(vs []uint64) {
	if len(vs) == 0 {
		return
	}
	if p.nwait.Load() != 0 {
		vs = p.handoff(vs, true)
	}
	if len(vs) > 0 && p.deficit.Load() > 0 {
		vs = p.refillReserve(vs)
	}
	if len(vs) > 0 && p.nwait.Load() != 0 {
		vs = p.handoff(vs, false)
	}
	if len(vs) > 0 {
		p.pushAll(p.main, vs)
	}
	// A waiter may have queued between our nwait check and the push, after
	// its own last look at the ring; serve it from the ring now.
	if p.nwait.Load() != 0 {
		p.settle()
	}
}

// refillReserve moves a prefix of vs into the RX reserve, as much as the
// deficit allows, and returns the rest.
func (p *FramePool) refillReserve(vs []uint64) []uint64 {
	for {
		d := p.deficit.Load()
		if d <= 0 {
			return vs
		}
		k := min(d, int64(len(vs)))
		if !p.deficit.CompareAndSwap(d, d-k) {
			continue
		}
		n := p.rsv.PushBatch(vs[:k])
		if n < int(k) {
			// A consumer is mid-pop on the slot we need: give the tokens
			// back; the frames go to the shared ring instead.
			p.deficit.Add(k - int64(n))
		}
		return vs[n:]
	}
}

// pushAll pushes every element of vs onto r, whose capacity is at least the
// number of frames, so a failure normally is a consumer stalled mid-pop,
// which frees its slot when it runs. A ring that is really full means more
// addresses circulate than the pool has frames (a double release or foreign
// address in a build without debug checks); the excess is dropped and
// counted rather than spun on forever.
func (p *FramePool) pushAll(r *Ring, vs []uint64) {
	for len(vs) > 0 {
		n := r.PushBatch(vs)
		vs = vs[n:]
		if n == 0 {
			if r.Len() == r.Cap() {
				p.overflows.Add(uint64(len(vs)))
				return
			}
			runtime.Gosched()
		}
	}
}

// noteOut updates the high-water mark of frames outside the shared rings
// (held by users or sitting in caches). Called when frames leave the rings in
// a batch, so it costs nothing per frame.
func (p *FramePool) noteOut() {
	out := int64(p.cfg.Frames - p.main.Len() - p.rsv.Len())
	for {
		hw := p.highWater.Load()
		if out <= hw || p.highWater.CompareAndSwap(hw, out) {
			return
		}
	}
}

// Close wakes every waiter with ErrClosed and makes later waits fail with
// ErrClosed. Get and Put keep working so that frames still in flight can be
// returned; the owner of the UMEM unmaps it only after its users stopped.
// Close is idempotent.
func (p *FramePool) Close() error {
	p.wq.close(p)
	return nil
}

// CheckConservation verifies that every frame is accounted for exactly once:
// free frames in the rings and caches carry distinct valid addresses, and
// their number plus the frames held by users (gets minus puts over all
// caches) equals Frames. In debug builds it also checks that each frame's
// ownership state agrees. Call it only while no goroutine uses p or its
// caches.
func (p *FramePool) CheckConservation() error {
	seen := make([]bool, p.cfg.Frames)
	free, dup, foreign := 0, 0, 0
	visit := func(addr uint64) {
		if !p.Contains(addr) {
			foreign++
			return
		}
		i := addr / uint64(p.cfg.FrameSize)
		if seen[i] {
			dup++
			return
		}
		seen[i] = true
		free++
	}
	p.main.each(visit)
	p.rsv.each(visit)
	p.mu.Lock()
	held := int64(p.retired.gets - p.retired.puts)
	for c := range p.caches {
		for _, a := range c.stack[:c.n] {
			visit(a)
		}
		held += int64(c.gets.Load()) - int64(c.puts.Load())
	}
	p.mu.Unlock()
	if dup != 0 || foreign != 0 || int64(free)+held != int64(p.cfg.Frames) {
		return fmt.Errorf("%w: %d free + %d held by users != %d frames (%d duplicated, %d foreign)",
			ErrConservation, free, held, p.cfg.Frames, dup, foreign)
	}
	if rl, d := p.rsv.Len(), p.deficit.Load(); int64(rl)+d != int64(p.cfg.Reserve) {
		return fmt.Errorf("%w: reserve holds %d with deficit %d, want %d", ErrConservation, rl, d, p.cfg.Reserve)
	}
	if debug {
		for i, s := range seen {
			if s == p.dbg.taken(i) {
				return fmt.Errorf("%w: frame %#x free=%v but tracker says taken=%v",
					ErrConservation, uint64(i)*uint64(p.cfg.FrameSize), s, !s)
			}
		}
	}
	return nil
}
