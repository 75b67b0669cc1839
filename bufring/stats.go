package bufring

import (
	"sort"
	"sync/atomic"
	"time"
)

// cacheStats are the counters of one Cache. Only the owning goroutine writes
// them, so inc updates them with a plain load and store (no locked
// instruction); atomics only make them safe to read from Stats.
type cacheStats struct {
	gets, puts           atomic.Uint64 // frames handed to and taken back from users
	fromShared, toShared atomic.Uint64 // frames moved between the cache and the pool
	fails                atomic.Uint64 // Get/GetBatch/GetRX calls that came back short
}

func inc(c *atomic.Uint64, n uint64) { c.Store(c.Load() + n) }

type cacheCounters struct {
	gets, puts, fromShared, toShared, fails uint64
}

func (s *cacheStats) load() cacheCounters {
	return cacheCounters{
		gets: s.gets.Load(), puts: s.puts.Load(),
		fromShared: s.fromShared.Load(), toShared: s.toShared.Load(),
		fails: s.fails.Load(),
	}
}

func (c *cacheCounters) add(o cacheCounters) {
	c.gets += o.gets
	c.puts += o.puts
	c.fromShared += o.fromShared
	c.toShared += o.toShared
	c.fails += o.fails
}

// WaitBuckets are the upper bounds of the wait-time histogram in
// FrameStats.WaitTime; the last bucket counts longer waits.
var WaitBuckets = [...]time.Duration{
	time.Microsecond, 4 * time.Microsecond, 16 * time.Microsecond, 64 * time.Microsecond,
	256 * time.Microsecond, time.Millisecond, 4 * time.Millisecond, 16 * time.Millisecond,
	64 * time.Millisecond, 256 * time.Millisecond, time.Second,
}

func (p *FramePool) observeWait(d time.Duration) {
	i := sort.Search(len(WaitBuckets), func(i int) bool { return d <= WaitBuckets[i] })
	p.hist[i].Add(1)
}

// OwnerStats are the counters of one live Cache.
type OwnerStats struct {
	Owner string
	// Gets and Puts count frames handed to users through this cache and
	// released through it.
	Gets, Puts uint64
	// InUse is Gets minus Puts: the frames this owner took and has not
	// released itself. It is negative for an owner that releases frames
	// other workers took (cross-worker transfer).
	InUse int64
	// Cached is the number of free frames sitting in this cache.
	Cached int64
	// Failures counts allocation calls that came back empty or short.
	Failures uint64
}

// FrameStats is a snapshot of a FramePool. Figures are read without stopping
// traffic, so under load they are mutually consistent only approximately;
// they are exact when the pool is quiescent.
type FrameStats struct {
	Frames, FrameSize int
	// Free is the number of frames not held by users: Shared + Reserve +
	// Cached.
	Free int64
	// Shared is the number of frames in the shared ring.
	Shared int
	// Reserve is the current level of the RX reserve, ReserveTarget its
	// configured level, ReserveTaken how many frames GetRX or ClassRX
	// waiters have taken from it.
	Reserve, ReserveTarget int
	ReserveTaken           uint64
	// Cached is the number of free frames in caches.
	Cached int64
	// InUse is the number of frames held by users.
	InUse int64
	// HighWater is the largest number of frames observed outside the
	// shared rings (held by users or cached) when frames left them.
	HighWater int64
	// Failures counts allocation calls that came back empty or short.
	Failures uint64
	// Waits counts Wait calls that had to queue; WaitFailures those that
	// gave up (context done, pool closed).
	Waits, WaitFailures uint64
	// Handoffs counts frames released straight to a waiter; PassedOn those
	// a waiter received after giving up and passed on.
	Handoffs, PassedOn uint64
	// Overflows counts released addresses dropped because the shared ring
	// was full, which only a double release or a foreign address can cause
	// (debug builds panic on those instead).
	Overflows uint64
	// Waiting is the number of goroutines queued now.
	Waiting int64
	// WaitTime is a histogram of queueing times of successful waits:
	// WaitTime[i] counts waits of at most WaitBuckets[i], the last entry
	// longer ones.
	WaitTime [len(WaitBuckets) + 1]uint64
	// Owners has one entry per live Cache, sorted by owner.
	Owners []OwnerStats
}

// Stats returns a snapshot of p. It may be called from any goroutine.
func (p *FramePool) Stats() FrameStats {
	s := FrameStats{
		Frames: p.cfg.Frames, FrameSize: p.cfg.FrameSize,
		Shared: p.main.Len(), Reserve: p.rsv.Len(), ReserveTarget: p.cfg.Reserve,
		ReserveTaken: p.rsvTaken.Load(), HighWater: p.highWater.Load(),
		Waits: p.waits.Load(), WaitFailures: p.waitFails.Load(),
		Handoffs: p.handoffs.Load(), PassedOn: p.passedOn.Load(),
		Waiting: p.nwait.Load(), Overflows: p.overflows.Load(),
	}
	for i := range s.WaitTime {
		s.WaitTime[i] = p.hist[i].Load()
	}
	p.mu.Lock()
	total := p.retired
	for c := range p.caches {
		cc := c.load()
		total.add(cc)
		s.Owners = append(s.Owners, OwnerStats{
			Owner: c.owner, Gets: cc.gets, Puts: cc.puts,
			InUse:    int64(cc.gets - cc.puts),
			Cached:   int64(cc.fromShared - cc.toShared - (cc.gets - cc.puts)),
			Failures: cc.fails,
		})
	}
	p.mu.Unlock()
	sort.Slice(s.Owners, func(i, j int) bool { return s.Owners[i].Owner < s.Owners[j].Owner })
	s.InUse = int64(total.gets - total.puts)
	s.Cached = int64(total.fromShared - total.toShared - (total.gets - total.puts))
	s.Free = int64(s.Shared+s.Reserve) + s.Cached
	s.Failures = total.fails
	return s
}
