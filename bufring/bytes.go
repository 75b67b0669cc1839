package bufring

import (
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// ByteConfig configures a BytePool.
type ByteConfig struct {
	// Sizes are the size classes in bytes, strictly increasing. A request
	// for n bytes is served from the smallest class >= n. Default:
	// 2 KiB, 16 KiB, 64 KiB.
	Sizes []int
	// CacheSize is the number of buffers each ByteCache keeps per class;
	// default 32.
	CacheSize int
	// Batch is how many buffers a cache moves to or from the shared ring
	// at a time; default CacheSize/2.
	Batch int
	// Shared is the capacity of the shared ring of each class, rounded up
	// to a power of two; default 256. Buffers released beyond it go to the
	// garbage collector, which bounds the memory an idle pool keeps.
	Shared int
	// Limit, when positive, bounds the bytes of the buffers the pool has
	// allocated and not yet left to the garbage collector: held by users,
	// cached, or in the shared rings. [BytePool.Acquire] waits for a
	// release rather than allocate beyond it; ByteCache.Get still never
	// fails, but its allocations count. Default 0: no bound. A bounded
	// pool cannot be resized.
	Limit int64
	// ReserveLimit, when positive, bounds the bytes reserved
	// ([BytePool.Reserve]) below Limit: what it leaves is for buffers
	// only, so that reservations (connections) cannot take the room the
	// buffers their transfers need. Default 0: Limit.
	ReserveLimit int64
}

func (cfg *ByteConfig) setDefaults() error {
	if cfg.Sizes == nil {
		cfg.Sizes = []int{2 << 10, 16 << 10, 64 << 10}
	}
	if err := checkSizes(cfg.Sizes); err != nil {
		return err
	}
	if cfg.CacheSize < 0 || cfg.Batch < 0 || cfg.Shared < 0 || cfg.Shared > 1<<30 || cfg.Limit < 0 {
		return fmt.Errorf("%w: CacheSize %d, Batch %d, Shared %d, Limit %d", ErrConfig, cfg.CacheSize, cfg.Batch, cfg.Shared, cfg.Limit)
	}
	if cfg.ReserveLimit < 0 || cfg.ReserveLimit > cfg.Limit {
		return fmt.Errorf("%w: ReserveLimit %d outside 0..Limit %d", ErrConfig, cfg.ReserveLimit, cfg.Limit)
	}
	if cfg.Limit > 0 && cfg.Limit < int64(cfg.Sizes[len(cfg.Sizes)-1]) {
		return fmt.Errorf("%w: Limit %d below the largest size class %d", ErrConfig, cfg.Limit, cfg.Sizes[len(cfg.Sizes)-1])
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 32
	}
	if cfg.Batch == 0 {
		cfg.Batch = max(1, cfg.CacheSize/2)
	}
	if cfg.Batch > cfg.CacheSize {
		return fmt.Errorf("%w: Batch %d larger than CacheSize %d", ErrConfig, cfg.Batch, cfg.CacheSize)
	}
	if cfg.Shared == 0 {
		cfg.Shared = 256
	}
	cfg.Shared = 1 << bits.Len(uint(cfg.Shared-1))
	return nil
}

func checkSizes(sizes []int) error {
	if len(sizes) == 0 || len(sizes) > 32 {
		return fmt.Errorf("%w: %d size classes, want 1 to 32", ErrConfig, len(sizes))
	}
	for i, s := range sizes {
		if s <= 0 || i > 0 && s <= sizes[i-1] {
			return fmt.Errorf("%w: size classes %v must be positive and strictly increasing", ErrConfig, sizes)
		}
	}
	return nil
}

// byteGen is one generation of a BytePool's size classes.
type byteGen struct {
	n     uint64
	sizes []int
	rings []*RingOf[[]byte]
}

// class returns the index of the smallest class holding n bytes, or -1.
func (g *byteGen) class(n int) int {
	for i, s := range g.sizes {
		if n <= s {
			return i
		}
	}
	return -1
}

// exact returns the index of the class of size c, or -1.
func (g *byteGen) exact(c int) int {
	for i, s := range g.sizes {
		if s == c {
			return i
		} else if s > c {
			break
		}
	}
	return -1
}

// BytePool pools heap byte buffers in size classes for stream data (mux/,
// engine/). Like FramePool it has a lock-free shared ring per class and
// per-worker caches ([ByteCache]); unlike frames, buffers are ordinary heap
// memory: the pool allocates when it has none and lets the garbage collector
// take what it does not keep, so Get never fails.
//
// The size classes can change at run time ([BytePool.Resize]): each change
// starts a new generation, and every cache drops its buffers whose size is no
// longer a class at its next Get, Put or Housekeep, while traffic goes on.
//
// Ownership: a buffer returned by Get belongs to the caller until it passes
// it to Put (on any ByteCache of the pool) exactly once; after Put it must not
// be touched. Its contents are whatever its previous user left.
type BytePool struct {
	cfg ByteConfig
	gen atomic.Pointer[byteGen]
	dbg *byteTracker

	// mu guards the cache registry and serialises Resize.
	mu      sync.Mutex
	caches  map[*ByteCache]struct{}
	retired byteCounters

	shared byteShared // the bounded shared path: Acquire, Release (shared.go)
}

// NewBytePool returns an empty pool.
func NewBytePool(cfg ByteConfig) (*BytePool, error) {
	cfg.Sizes = slices.Clone(cfg.Sizes)
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p := &BytePool{cfg: cfg, caches: make(map[*ByteCache]struct{})}
	if debug {
		p.dbg = &byteTracker{out: make(map[*byte]bool)}
	}
	p.gen.Store(p.newGen(1, cfg.Sizes))
	return p, nil
}

func (p *BytePool) newGen(n uint64, sizes []int) *byteGen {
	g := &byteGen{n: n, sizes: sizes, rings: make([]*RingOf[[]byte], len(sizes))}
	for i := range g.rings {
		g.rings[i], _ = NewRingOf[[]byte](p.cfg.Shared) // Shared is a power of two
	}
	return g
}

// Sizes returns the current size classes.
func (p *BytePool) Sizes() []int { return slices.Clone(p.gen.Load().sizes) }

// Resize replaces the size classes and starts a new generation. Buffers of
// sizes that remain classes are kept; the others are dropped by the caches at
// their next housekeeping and when they reach the shared rings.
func (p *BytePool) Resize(sizes []int) error {
	sizes = slices.Clone(sizes)
	if p.cfg.Limit > 0 {
		return fmt.Errorf("%w: a pool with a Limit cannot be resized", ErrConfig)
	}
	if err := checkSizes(sizes); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.gen.Load()
	g := p.newGen(old.n+1, sizes)
	p.gen.Store(g)
	// Move what the old shared rings hold. A cache that has not seen the
	// new generation yet may still release into them; those buffers go to
	// the garbage collector with the old rings.
	var moved [64][]byte
	for _, r := range old.rings {
		for {
			n := r.PopBatch(moved[:])
			if n == 0 {
				break
			}
			for _, b := range moved[:n] {
				if i := g.exact(cap(b)); i >= 0 {
					g.rings[i].Push(b)
				}
			}
			clear(moved[:n])
		}
	}
	return nil
}

// byteCounters are the counters of one ByteCache.
type byteCounters struct {
	gets, puts uint64
	allocs     uint64 // Gets served by a new heap allocation
	oversize   uint64 // Gets larger than the largest class (allocated, never pooled)
	dropped    uint64 // Puts of buffers that fit no class (foreign, resliced or stale size)
	stale      uint64 // cached buffers dropped by housekeeping after a Resize
	discarded  uint64 // buffers left to the GC because the shared ring was full
}

func (c *byteCounters) add(o byteCounters) {
	c.gets += o.gets
	c.puts += o.puts
	c.allocs += o.allocs
	c.oversize += o.oversize
	c.dropped += o.dropped
	c.stale += o.stale
	c.discarded += o.discarded
}

// byteCacheStats mirror byteCounters for reading from Stats; only the owner
// writes them (see inc).
type byteCacheStats struct {
	gets, puts, allocs, oversize, dropped, stale, discarded atomic.Uint64
}

func (s *byteCacheStats) load() byteCounters {
	return byteCounters{
		gets: s.gets.Load(), puts: s.puts.Load(), allocs: s.allocs.Load(), oversize: s.oversize.Load(),
		dropped: s.dropped.Load(), stale: s.stale.Load(), discarded: s.discarded.Load(),
	}
}

// ByteCache is a per-worker front of a BytePool. Like Cache it is not safe
// for concurrent use; buffers may be released through any cache of the pool.
type ByteCache struct {
	p      *BytePool
	owner  string
	gen    *byteGen
	stacks [][][]byte // per class; len is the count, cap CacheSize

	byteCacheStats
	_ [cacheLine]byte
}

// NewCache returns a ByteCache named owner, owned by the calling goroutine.
func (p *BytePool) NewCache(owner string) *ByteCache {
	c := &ByteCache{p: p, owner: owner}
	c.adopt(p.gen.Load())
	p.mu.Lock()
	p.caches[c] = struct{}{}
	p.mu.Unlock()
	return c
}

// adopt switches c to generation g, keeping the cached buffers whose size is
// still a class.
func (c *ByteCache) adopt(g *byteGen) {
	old := c.stacks
	c.gen = g
	c.stacks = make([][][]byte, len(g.sizes))
	for i := range c.stacks {
		c.stacks[i] = make([][]byte, 0, c.p.cfg.CacheSize)
	}
	for _, st := range old {
		for _, b := range st {
			if i := g.exact(cap(b)); i >= 0 && len(c.stacks[i]) < cap(c.stacks[i]) {
				c.stacks[i] = append(c.stacks[i], b)
			} else {
				inc(&c.stale, 1)
			}
		}
	}
}

// Housekeep drops the cached buffers of sizes that a Resize removed. Get and
// Put do it on their own as soon as they see a new generation; workers that
// go idle call Housekeep so that stale memory is freed without waiting for
// traffic.
func (c *ByteCache) Housekeep() {
	if g := c.p.gen.Load(); g != c.gen {
		c.adopt(g)
	}
}

// Get returns a buffer of length n whose capacity is the smallest size class
// holding n. A request above the largest class gets a fresh exact-size
// allocation, which Put will not pool. Like make, Get panics if n is
// negative.
func (c *ByteCache) Get(n int) []byte {
	if n < 0 {
		panic("bufring: ByteCache.Get with negative length")
	}
	c.Housekeep()
	i := c.gen.class(n)
	if i < 0 {
		inc(&c.oversize, 1)
		inc(&c.gets, 1)
		return make([]byte, n)
	}
	st := c.stacks[i]
	if len(st) == 0 {
		st = st[:c.gen.rings[i].PopBatch(st[:c.p.cfg.Batch])]
	}
	var b []byte
	if len(st) == 0 {
		inc(&c.allocs, 1)
		c.p.grow(c.gen.sizes[i])
		b = make([]byte, c.gen.sizes[i])
	} else {
		b = st[len(st)-1]
		st[len(st)-1] = nil
		st = st[:len(st)-1]
	}
	c.stacks[i] = st
	inc(&c.gets, 1)
	if debug {
		c.p.dbg.take(b)
	}
	return b[:n]
}

// Put releases b, which must have been returned by Get on a cache of the same
// pool and not resliced from a non-zero start (its capacity identifies its
// class). Buffers whose capacity is not a current class are dropped.
func (c *ByteCache) Put(b []byte) {
	c.Housekeep()
	inc(&c.puts, 1)
	i := c.gen.exact(cap(b))
	if i < 0 {
		if debug && cap(b) > 0 {
			c.p.dbg.forget(b)
		}
		inc(&c.dropped, 1)
		return
	}
	if debug {
		c.p.dbg.give(b)
	}
	st := c.stacks[i]
	if len(st) == cap(st) {
		st = c.flush(i, c.p.cfg.Batch)
	}
	c.stacks[i] = append(st, b[:cap(b)])
	if c.p.shared.sleepers() {
		// Someone sleeps in Acquire or Reserve: what this cache keeps, it
		// cannot have.
		c.Flush()
		c.p.settle()
	}
}

// flush moves the k most recently cached buffers of class i to the shared
// ring and returns the remaining stack.
func (c *ByteCache) flush(i, k int) [][]byte {
	st := c.stacks[i]
	k = min(k, len(st))
	out := st[len(st)-k:]
	n := c.gen.rings[i].PushBatch(out)
	if n < k {
		inc(&c.discarded, uint64(k-n))
		c.p.shrink(int64(k-n) * int64(c.gen.sizes[i]))
	}
	clear(out)
	c.stacks[i] = st[:len(st)-k]
	return c.stacks[i]
}

// Flush moves every cached buffer to the shared rings (or the GC if they are
// full).
func (c *ByteCache) Flush() {
	for i := range c.stacks {
		c.flush(i, len(c.stacks[i]))
	}
}

// Close flushes c and folds its counters into the pool's totals. c must not be
// used afterwards.
func (c *ByteCache) Close() {
	c.Housekeep()
	c.Flush()
	p := c.p
	p.mu.Lock()
	if _, ok := p.caches[c]; ok {
		delete(p.caches, c)
		p.retired.add(c.load())
	}
	p.mu.Unlock()
}

// ByteOwnerStats are the counters of one live ByteCache.
type ByteOwnerStats struct {
	Owner      string
	Gets, Puts uint64
	// InUse is Gets minus Puts; negative for an owner that releases buffers
	// taken on other workers.
	InUse int64
}

// ByteStats is a snapshot of a BytePool (approximate under load).
type ByteStats struct {
	Sizes      []int
	Generation uint64
	// Shared is the number of buffers in the shared ring of each class.
	Shared []int
	Gets   uint64
	Puts   uint64
	InUse  int64
	// Allocs counts Gets served by a new allocation (the pool was empty),
	// Oversize those above the largest class.
	Allocs, Oversize uint64
	// Dropped counts Puts of buffers of no current class, Stale cached
	// buffers dropped after a Resize, Discarded buffers left to the GC
	// because a shared ring was full.
	Dropped, Stale, Discarded uint64
	Owners                    []ByteOwnerStats

	// The shared path (Acquire, Release) and the Limit. Gets, Puts and
	// InUse above include it. Limit is the configured bound (0: none) and
	// Live the bytes allocated and not yet left to the GC (0 without a
	// Limit). Waits counts Acquire calls that slept, WaitFailures those
	// that gave up (deadline, cancellation, close), Waiting those asleep
	// now, Handoffs buffers handed to a sleeper, PassedOn buffers handed
	// to a sleeper that had just given up, Evicted free buffers of one
	// class dropped to make room for another, TooLarge refused lengths.
	// WaitTime is the total and MaxWait the longest successful wait.
	Limit, Live                   int64
	SharedGets, SharedPuts        uint64
	Waits, WaitFailures, Handoffs uint64
	PassedOn, Evicted, TooLarge   uint64
	Waiting                       int64
	WaitTime, MaxWait             time.Duration

	// Reservations (Reserve, TryReserve, Unreserve): Reserved is the
	// bytes reserved now (in Live too under a Limit), Reserves the
	// reservations granted, ReserveWaits the Reserve calls that slept,
	// ReserveFailures those that gave up, ReserveWaiting those asleep now.
	Reserved, ReserveWaiting int64
	Reserves, ReserveWaits   uint64
	ReserveFailures          uint64
}

// Stats returns a snapshot of p; it may be called from any goroutine.
func (p *BytePool) Stats() ByteStats {
	g := p.gen.Load()
	s := ByteStats{Sizes: slices.Clone(g.sizes), Generation: g.n}
	for _, r := range g.rings {
		s.Shared = append(s.Shared, r.Len())
	}
	p.mu.Lock()
	t := p.retired
	for c := range p.caches {
		cc := c.load()
		t.add(cc)
		s.Owners = append(s.Owners, ByteOwnerStats{Owner: c.owner, Gets: cc.gets, Puts: cc.puts, InUse: int64(cc.gets - cc.puts)})
	}
	p.mu.Unlock()
	sort.Slice(s.Owners, func(i, j int) bool { return s.Owners[i].Owner < s.Owners[j].Owner })
	sh := &p.shared
	s.SharedGets, s.SharedPuts = sh.gets.Load(), sh.puts.Load()
	t.gets += s.SharedGets
	t.puts += s.SharedPuts
	t.allocs += sh.allocs.Load()
	t.discarded += sh.discarded.Load()
	s.Gets, s.Puts, s.InUse = t.gets, t.puts, int64(t.gets-t.puts)
	s.Allocs, s.Oversize, s.Dropped, s.Stale, s.Discarded = t.allocs, t.oversize, t.dropped, t.stale, t.discarded
	s.Limit, s.Live = p.cfg.Limit, sh.live.Load()
	s.Waits, s.WaitFailures, s.Handoffs = sh.waits.Load(), sh.waitFails.Load(), sh.handoffs.Load()
	s.PassedOn, s.Evicted, s.TooLarge = sh.passedOn.Load(), sh.evicted.Load(), sh.tooLarge.Load()
	s.Waiting = sh.nwait.Load()
	s.WaitTime, s.MaxWait = time.Duration(sh.waitNanos.Load()), time.Duration(sh.maxWaitNs.Load())
	s.Reserved, s.ReserveWaiting = sh.reserved.Load(), sh.rwait.Load()
	s.Reserves, s.ReserveWaits, s.ReserveFailures = sh.reserves.Load(), sh.reserveWaits.Load(), sh.reserveFails.Load()
	return s
}

// byteTracker records, in debug builds, which pooled buffers users hold.
type byteTracker struct {
	mu  sync.Mutex
	out map[*byte]bool // keyed by the first byte of the buffer's memory
}

func key(b []byte) *byte { return &b[:1][0] }

func (t *byteTracker) take(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := key(b)
	if t.out[k] {
		panic(fmt.Sprintf("bufring: byte buffer %p handed out twice", k))
	}
	t.out[k] = true
}

func (t *byteTracker) give(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := key(b)
	if !t.out[k] {
		panic(fmt.Sprintf("bufring: double release or foreign byte buffer %p", k))
	}
	delete(t.out, k)
}

// forget drops b's record when Put discards it (stale size).
func (t *byteTracker) forget(b []byte) {
	t.mu.Lock()
	delete(t.out, key(b))
	t.mu.Unlock()
}
