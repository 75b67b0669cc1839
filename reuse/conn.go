package reuse

import (
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/mux"
)

type tree uint8

const (
	inNone  tree = iota // leased and full, private, or released
	inAvail             // streams in use, credit left
	inSafe              // idle, completed a request
	inIdle              // idle, never completed a request
)

// Pending event bits of pconn.pending.
const (
	evQueued uint32 = 1 << iota // on its owner's inbox
	evCredit                    // mux.Watcher.StreamCredit
	evDead                      // mux.Watcher.ConnDead
)

// pconn is the pool's record of one backend connection. It is the
// connection's mux.Watcher. Fields below owner are guarded by the owner
// Worker's mu; owner itself changes only under the old owner's mu (takeover).
type pconn struct {
	c    mux.Conn
	hash uint64

	owner   atomic.Pointer[Worker]
	pending atomic.Uint32 // evX bits
	inNext  *pconn        // next on the inbox stack; written by the pusher that set evQueued
	probing atomic.Bool   // a liveness ping is in flight
	// full is set by the owner before it checks AvailStreams of a leased
	// shared connection and cleared if it finds credit, so a grant that
	// lands after the check always sees it set and queues the connection.
	full atomic.Bool

	b         *bucket // the owner's bucket for the connection's Params
	links     [numSlots]link
	tree      tree
	leases    int  // leases handed out and not yet Done
	credits   int  // those of leases attached with AttachConn (no stream of ours)
	reuses    int  // streams opened over the connection's life
	proven    bool // a request completed on it
	retired   bool // takes no new stream (max-reuse, drain, PolicyNever without session)
	released  bool // closed and forgotten by the pool
	private   *Session
	idleSince int64 // worker time when it last became idle
	lastProbe int64 // worker time of the last ping sent
}

var _ mux.Watcher = (*pconn)(nil)

// StreamCredit implements mux.Watcher: queue the connection to its owner.
// Credit matters only to a leased connection that left avail for lack of
// credit (full is set), so other credit events cost no inbox traffic.
func (p *pconn) StreamCredit(mux.Conn) {
	if p.full.Load() {
		p.notify(evCredit)
	}
}

// ConnDead implements mux.Watcher: queue the connection to its owner.
func (p *pconn) ConnDead(mux.Conn, error) { p.notify(evDead) }

func (p *pconn) notify(ev uint32) {
	if p.pending.Or(ev|evQueued)&evQueued != 0 {
		return // already queued; the owner will see ev
	}
	w := p.owner.Load()
	w.inboxPush(p)
	if w.waiting.Load() > 0 {
		// A waiter drains the inbox, which wakes those the event serves.
		select {
		case w.poke <- struct{}{}:
		default:
		}
	}
}

// credit returns how many leases p can take now without any opener waiting
// for the peer (0 if it may take none). AvailStreams is 0 on a dead or
// closing connection (mux.Conn contract), so it also rules those out.
func (p *pconn) credit(cfg *Config) int {
	if !p.shareable(cfg.MaxReuse) {
		return 0
	}
	return p.avail(cfg.MaxStreams)
}

func (p *pconn) usable(cfg *Config) bool { return p.credit(cfg) > 0 }

// avail is the stream credit left for new leases: the mux's AvailStreams
// less the credit that AttachConn leases reserved but whose callers have not
// opened their stream yet, capped by maxStreams leases at once (0: no cap).
//
// Those pending opens are leases - UsedStreams: every lease holds at most
// one stream, which counts as used from the moment it takes the mux's
// credit until it finishes (before Done), so an open moves one unit from
// pending to the mux's own count and leaves the result unchanged. Reading
// UsedStreams before AvailStreams makes an open between the two reads, or a
// stream finished before its Done, err low (an extra dial), never high (an
// opener that waits). Without AttachConn leases nothing is pending and the
// raw path reads AvailStreams only.
func (p *pconn) avail(maxStreams int) int {
	pending := 0
	if p.credits > 0 {
		pending = min(p.credits, max(0, p.leases-p.c.UsedStreams()))
	}
	n := p.c.AvailStreams() - pending
	if maxStreams > 0 {
		n = min(n, maxStreams-p.leases)
	}
	return max(0, n)
}

// shareable reports whether p may take new streams at all.
func (p *pconn) shareable(maxReuse int) bool {
	return !p.retired && !p.released && (maxReuse == 0 || p.reuses < maxReuse)
}

// bucket holds one worker's connections for one exact Params: HAProxy's
// per-hash tree nodes. Buckets whose Params hash alike chain through next.
type bucket struct {
	params Params // immutable
	hash   uint64
	next   *bucket
	ws     *wserver
	avail  plist
	safe   plist
	idle   plist
	conns  int // pconns whose b is this bucket, plus dials in progress
}

func newBucket(p *Params, h uint64, ws *wserver) *bucket {
	return &bucket{
		params: *p, hash: h, ws: ws,
		avail: plist{slot: slotTree},
		safe:  plist{slot: slotTree},
		idle:  plist{slot: slotTree},
	}
}

// wserver is one worker's state for one server.
type wserver struct {
	srv     *server
	lru     plist // idle and safe connections, front: most recently idle
	all     plist // every connection of this server on this worker
	conns   int   // connections owned, including dials in progress
	dialing int   // dials in progress
	used    int   // connections with a stream leased
	maxUsed int   // peak of used since the last purge
	estNeed int   // smoothed need, for purge
	buckets int
	last    *bucket // bucket of the last Attach, for warm-up dials
	// warmBackoff is the wait after the last failed warm-up dial (0 after a
	// success); no warm-up dial starts before worker time warmAfter.
	warmBackoff time.Duration
	warmAfter   int64
	// waiters are the Attach calls waiting for credit or a dial slot,
	// oldest first; each is woken once, through its channel, and removed.
	waiters []chan struct{}
	// dialFails counts failed dials; dialErr is the last one's error. A
	// waiter that counted on a dial which then failed gets that error
	// instead of dialing again itself.
	dialFails uint64
	dialErr   error
}

// wakeLocked wakes up to n waiters of ws, oldest first (n < 0: all).
func (ws *wserver) wakeLocked(n int) {
	if n < 0 || n > len(ws.waiters) {
		n = len(ws.waiters)
	}
	for _, ch := range ws.waiters[:n] {
		ch <- struct{}{} // capacity 1, and each is woken once
	}
	ws.waiters = ws.waiters[n:]
}

// forgetLocked removes a waiter that stopped waiting without being woken.
func (ws *wserver) forgetLocked(ch chan struct{}) {
	for i, c := range ws.waiters {
		if c == ch {
			ws.waiters = append(ws.waiters[:i], ws.waiters[i+1:]...)
			return
		}
	}
}

// server is the pool-wide state of one server.
type server struct {
	name string
}
