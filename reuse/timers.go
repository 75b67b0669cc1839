package reuse

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/mux"
)

// Tick runs the worker's timers at the time Config.Clock tells: idle-age
// eviction, the purge of surplus idle connections every PurgeDelay, liveness
// pings of idle connections, and PoolLowConn warm-up dials. Call it
// periodically (for instance every 100ms to 1s) from the worker's loop or let
// Pool.Run do it; timer resolution is the Tick period.
func (w *Worker) Tick() {
	now := w.pool.since(w.pool.cfg.Clock.Now())
	w.mu.Lock()
	defer w.mu.Unlock()
	if now > w.now {
		w.now = now
	}
	w.drainInboxLocked()
	cfg := &w.pool.cfg
	purge := cfg.PurgeDelay > 0 && w.now-w.lastPurge >= int64(cfg.PurgeDelay)
	if purge {
		w.lastPurge = w.now
	}
	for _, ws := range w.servers {
		if cfg.MaxIdleAge > 0 {
			for p := ws.lru.tail; p != nil && w.now-p.idleSince >= int64(cfg.MaxIdleAge); p = ws.lru.tail {
				w.release(p)
			}
		}
		if purge {
			w.purgeLocked(ws)
		}
		if cfg.ProbeInterval > 0 {
			w.probeLocked(ws)
		}
		w.warmLocked(ws)
	}
	if purge {
		w.collectLocked()
	}
}

// purgeLocked closes half of ws's idle connections beyond the estimated need,
// least recently used first. The need is the peak number of connections in
// use during the last period, smoothed so that it decays slowly, and never
// below PoolLowConn; like HAProxy's idle-connection cleanup, halving the
// surplus each period avoids closing what a burst will want again.
func (w *Worker) purgeLocked(ws *wserver) {
	need := max(ws.maxUsed, ws.estNeed, w.pool.cfg.PoolLowConn)
	exceed := min(ws.used+ws.lru.n-need, ws.lru.n)
	for kill := (exceed + 1) / 2; kill > 0 && ws.lru.tail != nil; kill-- {
		w.release(ws.lru.tail)
	}
	ws.estNeed = max((ws.estNeed+ws.maxUsed)/2, ws.maxUsed)
	ws.maxUsed = ws.used
}

// probeLocked pings the idle connections of ws that have been quiet for
// ProbeInterval. A failed ping closes the connection, whose death then
// reaches the owner through the watcher.
func (w *Worker) probeLocked(ws *wserver) {
	iv := int64(w.pool.cfg.ProbeInterval)
	for p := ws.lru.head; p != nil; p = ws.lru.next(p) {
		if w.now-max(p.idleSince, p.lastProbe) < iv || p.probing.Load() {
			continue
		}
		p.probing.Store(true)
		p.lastProbe = w.now
		c, probing := p.c, &p.probing
		w.pool.bg.Go(func() { w.pool.probe(c, probing) })
	}
}

func (pool *Pool) probe(c mux.Conn, probing *atomic.Bool) {
	ctx, cancel := context.WithTimeout(pool.ctx, pool.cfg.ProbeTimeout)
	err := c.Ping(ctx)
	cancel()
	probing.Store(false)
	if err != nil && pool.ctx.Err() == nil {
		pool.probeFailures.Add(1)
		c.Close()
	}
}

// Warm-up dials to a server that refuses them back off exponentially between
// these bounds, so a dead server is not dialed on every Tick.
const (
	warmBackoffMin = 100 * time.Millisecond
	warmBackoffMax = 30 * time.Second
)

// warmLocked dials in the background until ws has PoolLowConn connections,
// for servers that have been attached to (their last Params are known).
func (w *Worker) warmLocked(ws *wserver) {
	low := w.pool.cfg.PoolLowConn
	b := ws.last
	if b == nil || w.pool.closed.Load() || w.now < ws.warmAfter {
		return
	}
	for ws.conns < low {
		ws.conns++
		ws.dialing++
		b.conns++
		w.pool.bg.Go(func() { w.warmDial(b) })
	}
}

func (w *Worker) warmDial(b *bucket) {
	c, err := w.pool.cfg.Dial(w.pool.ctx, b.params)
	if err == nil && c == nil {
		err = errNoConn
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ws := b.ws
	ws.dialing--
	if err != nil {
		ws.conns--
		b.conns--
		w.st.DialErrors++
		ws.warmBackoff = min(max(2*ws.warmBackoff, warmBackoffMin), warmBackoffMax)
		ws.warmAfter = w.now + int64(ws.warmBackoff)
		return
	}
	ws.warmBackoff = 0
	w.place(w.adoptLocked(c, b))
}

// collectLocked forgets buckets and servers with no connection left, so a
// worker's maps do not grow with every server it ever talked to.
func (w *Worker) collectLocked() {
	for h, head := range w.buckets {
		var keep *bucket
		for b := head; b != nil; {
			next := b.next
			if b.conns == 0 && (b.ws.last != b || w.pool.cfg.PoolLowConn == 0) {
				b.ws.buckets--
				if b.ws.last == b {
					b.ws.last = nil
				}
			} else {
				b.next = keep
				keep = b
			}
			b = next
		}
		if keep == nil {
			delete(w.buckets, h)
		} else {
			w.buckets[h] = keep
		}
	}
	for srv, ws := range w.servers {
		if ws.buckets == 0 && ws.conns == 0 {
			delete(w.servers, srv)
		}
	}
}
