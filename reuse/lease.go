package reuse

import (
	"sync/atomic"

	"github.com/xdpnet/xdpnet/mux"
)

// Lease is one request's use of a stream on a pooled connection. It owns the
// stream: Done closes it. A Lease from AttachConn owns one unit of the
// connection's stream credit instead; the caller's stream is its own. A Lease is a two-word value; copies refer to the
// same lease, and only the first Done of any copy counts (later ones are
// ignored and counted in Stats.StaleDone), so a lease cannot be returned
// twice. After Done, Stream and Conn return nil. Forgetting Done leaks the
// connection's slot: Stats.Leases shows it.
type Lease struct {
	rec *leaseRec
	gen uint64
}

// leaseRec holds one lease's state. Records are recycled within a pool; the
// generation makes each lease unique, and is bumped by the one Done that
// counts.
type leaseRec struct {
	gen    atomic.Uint64
	pool   *Pool // immutable
	p      *pconn
	st     mux.Stream
	sess   *Session
	reused bool
	credit bool // from AttachConn: st is nil
}

// live returns l's record while l is not done, else nil.
func (l Lease) live() *leaseRec {
	if l.rec == nil || l.rec.gen.Load() != l.gen {
		return nil
	}
	return l.rec
}

// Valid reports whether l came from a successful Attach (it stays true after
// Done).
func (l Lease) Valid() bool { return l.rec != nil }

// Stream returns the lease's stream (nil after Done, and for a lease from
// AttachConn). Do not Close it after Done.
func (l Lease) Stream() mux.Stream {
	if r := l.live(); r != nil {
		return r.st
	}
	return nil
}

// Conn returns the connection carrying the stream, or for a lease from
// AttachConn the one to open it on (nil after Done and for a zero Lease).
func (l Lease) Conn() mux.Conn {
	if r := l.live(); r != nil {
		return r.p.c
	}
	return nil
}

// Reused reports whether the connection had carried a stream before this
// one: only then may a request that failed before any response byte be
// retried (see Worker.Retry). False after Done.
func (l Lease) Reused() bool {
	r := l.live()
	return r != nil && r.reused
}

// Done closes the stream (a lease from AttachConn gives its credit back) and
// detaches from the connection. err is nil when
// the request completed (the connection is then known to work and can serve
// first requests under PolicySafe), else what went wrong. Safe to call from
// any goroutine; only the first call counts.
func (l Lease) Done(err error) {
	r := l.rec
	if r == nil {
		return
	}
	if !r.gen.CompareAndSwap(l.gen, l.gen+1) {
		r.pool.staleDone.Add(1)
		return
	}
	p, st, credit := r.p, r.st, r.credit
	r.p, r.st, r.sess = nil, nil, nil
	if st != nil {
		st.Close() // its error says nothing about the connection's state
	}
	// p cannot be taken over while leased, so its owner is stable here.
	w := p.owner.Load()
	w.mu.Lock()
	w.detachLocked(p, err, credit)
	w.free = append(w.free, r)
	w.mu.Unlock()
}

// MakePrivate ties the lease's connection to the lease's session from now
// on (e.g. the server authenticated this client on it): no other session
// will get it, and it closes with the session.
func (l Lease) MakePrivate() error {
	r := l.live()
	if r == nil {
		return ErrStaleLease
	}
	if r.sess == nil {
		return ErrNoSession
	}
	w := r.p.owner.Load()
	w.mu.Lock()
	w.makePrivateLocked(r.p, r.sess)
	w.mu.Unlock()
	return nil
}

// Session is one client session (one client connection) of a Worker. The
// reuse policy treats its first request specially, and its private
// connections serve only it. Its fields are guarded by its worker's mu.
type Session struct {
	w      *Worker
	reqs   int
	conns  plist // private connections
	closed bool
}

// Close ends the session: its idle private connections close now, busy ones
// when their last stream is done.
func (s *Session) Close() {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	s.closed = true
	for p := s.conns.head; p != nil; {
		next := s.conns.next(p)
		w.place(p)
		p = next
	}
}

// idleOthers counts s's idle private connections other than p.
func (s *Session) idleOthers(p *pconn) int {
	n := 0
	for q := s.conns.head; q != nil; q = s.conns.next(q) {
		if q != p && q.leases == 0 {
			n++
		}
	}
	return n
}
