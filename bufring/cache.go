package bufring

// Cache is a per-worker front of a FramePool: Get and Put are served from a
// local stack and only every Batch frames touch the shared ring. A Cache is
// not safe for concurrent use: give each worker goroutine its own (or guard
// it with the owner's lock); only Stats of its pool may run concurrently with
// its methods. Frames are not tied to a cache: a frame got from one Cache may be
// released through any other Cache of the same pool, on any goroutine
// (cross-worker transfer).
type Cache struct {
	p     *FramePool
	owner string
	stack []uint64 // free frames; stack[:n] are valid
	n     int
	batch int
	one   [1]uint64 // scratch for single-frame slow paths

	cacheStats
	_ [cacheLine]byte // keep the next allocation off the counters' line
}

// NewCache returns a Cache named owner (the name appears in Stats). The
// caller's goroutine owns it; Close it when the worker stops so its frames
// return to the shared ring.
func (p *FramePool) NewCache(owner string) *Cache {
	c := &Cache{p: p, owner: owner, stack: make([]uint64, p.cfg.CacheSize), batch: p.cfg.Batch}
	p.mu.Lock()
	p.caches[c] = struct{}{}
	p.mu.Unlock()
	return c
}

// Owner returns the name given to NewCache.
func (c *Cache) Owner() string { return c.owner }

// Pool returns the pool c belongs to.
func (c *Cache) Pool() *FramePool { return c.p }

// Get returns a free frame, or false when neither the cache nor the shared
// ring has one. It never takes the RX reserve. The caller owns the frame
// until it passes it to Put or PutBatch (on any Cache of the pool) or to the
// kernel, whose return of it it then owes the pool.
func (c *Cache) Get() (addr uint64, ok bool) {
	if c.n == 0 && !c.refill() {
		inc(&c.fails, 1)
		return 0, false
	}
	c.n--
	addr = c.stack[c.n]
	inc(&c.gets, 1)
	if debug {
		c.p.dbg.take(addr)
	}
	return addr, true
}

// refill moves up to Batch frames from the shared ring into the empty stack.
func (c *Cache) refill() bool {
	n := c.p.main.PopBatch(c.stack[:c.batch])
	if n == 0 {
		return false
	}
	c.n = n
	inc(&c.fromShared, uint64(n))
	c.p.noteOut()
	return true
}

// GetBatch fills a prefix of dst with free frames and returns its length; it
// is short only when the cache and the shared ring ran dry. It never takes
// the RX reserve. Ownership is as for Get.
func (c *Cache) GetBatch(dst []uint64) int {
	n := c.get(dst)
	if n < len(dst) {
		inc(&c.fails, 1)
	}
	return n
}

func (c *Cache) get(dst []uint64) int {
	n := min(c.n, len(dst))
	copy(dst, c.stack[c.n-n:c.n])
	c.n -= n
	if n < len(dst) {
		// Large requests bypass the stack: one copy, straight from the ring.
		got := 0
		for n < len(dst) {
			k := c.p.main.PopBatch(dst[n:])
			if k == 0 {
				break
			}
			n += k
			got += k
		}
		if got > 0 {
			inc(&c.fromShared, uint64(got))
			c.p.noteOut()
		}
	}
	inc(&c.gets, uint64(n))
	if debug {
		for _, a := range dst[:n] {
			c.p.dbg.take(a)
		}
	}
	return n
}

// GetRX is GetBatch for the RX fill path: when the cache and the shared ring
// run dry it goes on to take frames from the RX reserve. Only the goroutine
// that refills the fill ring of an AF_XDP socket should call it.
func (c *Cache) GetRX(dst []uint64) int {
	n := c.get(dst)
	if n < len(dst) {
		k := c.p.rsv.PopBatch(dst[n:])
		if k > 0 {
			c.p.deficit.Add(int64(k))
			c.p.rsvTaken.Add(uint64(k))
			inc(&c.fromShared, uint64(k))
			inc(&c.gets, uint64(k))
			c.p.noteOut()
			if debug {
				for _, a := range dst[n : n+k] {
					c.p.dbg.take(a)
				}
			}
			n += k
		}
		if n < len(dst) {
			inc(&c.fails, 1)
		}
	}
	return n
}

// Put releases the frame at addr, which the caller owns, to the pool. If
// someone waits for a frame or the RX reserve is low, the frame goes straight
// there; otherwise it stays in this cache, and Batch frames go back to the
// shared ring whenever the cache is full.
func (c *Cache) Put(addr uint64) {
	if debug {
		c.p.dbg.give(addr)
	}
	inc(&c.puts, 1)
	if c.p.needSlow() {
		inc(&c.toShared, 1)
		c.one[0] = addr
		c.p.release(c.one[:])
		c.feedWaiters()
		return
	}
	if c.n == len(c.stack) {
		c.flush(c.batch)
	}
	c.stack[c.n] = addr
	c.n++
}

// PutBatch releases every frame in addrs, as Put would. It does not retain
// addrs.
func (c *Cache) PutBatch(addrs []uint64) {
	if debug {
		for _, a := range addrs {
			c.p.dbg.give(a)
		}
	}
	inc(&c.puts, uint64(len(addrs)))
	if c.p.needSlow() {
		inc(&c.toShared, uint64(len(addrs)))
		c.p.release(addrs)
		c.feedWaiters()
		return
	}
	if room := len(c.stack) - c.n; len(addrs) > room {
		// Keep what fits (the most recently used frames are the warmest)
		// and send the rest to the shared ring in one batch.
		inc(&c.toShared, uint64(len(addrs)-room))
		c.p.release(addrs[room:])
		addrs = addrs[:room]
	}
	c.n += copy(c.stack[c.n:], addrs)
}

// feedWaiters gives the frames cached in c to waiters when there are any:
// while others sleep for frames, a busy worker must not keep a private
// stock of them.
func (c *Cache) feedWaiters() {
	if c.n > 0 && c.p.nwait.Load() != 0 {
		c.Flush()
	}
}

// flush moves the k most recently cached frames to the shared ring.
func (c *Cache) flush(k int) {
	k = min(k, c.n)
	inc(&c.toShared, uint64(k))
	c.p.release(c.stack[c.n-k : c.n])
	c.n -= k
}

// Flush returns every frame cached in c to the pool (waiters, reserve,
// shared ring). Workers call it when they go idle so that other workers can
// use the frames: an active cache gives its frames to waiters on its own
// (on its next release), an idle one cannot.
func (c *Cache) Flush() { c.flush(c.n) }

// Close flushes c and removes it from its pool's statistics (its counters are
// kept in the pool's totals). c must not be used afterwards.
func (c *Cache) Close() {
	c.Flush()
	p := c.p
	p.mu.Lock()
	if _, ok := p.caches[c]; ok {
		delete(p.caches, c)
		p.retired.add(c.load())
	}
	p.mu.Unlock()
}
