package reuse_test

import (
	"context"
	"errors"
	"testing"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/muxtest"
	"github.com/xdpnet/xdpnet/reuse"
)

// attachConn is env.attach for AttachConn.
func (e *env) attachConn(w int, p *reuse.Params, s *reuse.Session) lease {
	e.t.Helper()
	l, err := e.pool.Worker(w).AttachConn(context.Background(), p, s)
	if err != nil {
		e.t.Fatalf("attach conn: %v", err)
	}
	if l.Stream() != nil {
		e.t.Fatal("AttachConn lease carries a stream")
	}
	e.check()
	return lease{l, l.Conn()}
}

// open plays the caller of AttachConn opening its stream: the credit the
// pool kept for it must be there, so a canceled context (no waiting) works.
func open(t *testing.T, l lease) mux.Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, err := l.Conn().OpenStream(ctx)
	if err != nil {
		t.Fatalf("open on the leased credit: %v", err)
	}
	return st
}

// Credit reserved by AttachConn leases counts as used before and after the
// caller opens its stream: a connection whose credit is all reserved is not
// handed out again (a dial instead), and every caller's open succeeds
// without waiting.
func TestAttachConnCreditAccounting(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	e.opts = muxtest.Options{MaxStreams: 2} // no auto credit: only Grant raises it
	l1 := e.attachConn(0, params("s1"), nil)
	c1 := l1.Conn().(*muxtest.Conn)
	if c1.Opened() != 0 {
		t.Fatal("AttachConn opened a stream")
	}
	if got := e.tree(0, c1); got != "avail" {
		t.Fatalf("conn with one credit left in %q, want avail", got)
	}
	l2 := e.attachConn(0, params("s1"), nil) // the last credit, not opened yet
	if l2.Conn() != c1 {
		t.Fatal("credit left but not used")
	}
	if got := e.tree(0, c1); got != "" {
		t.Fatalf("conn with all credit reserved in %q", got)
	}
	// c1 still reports AvailStreams 2: both reservations are pending.
	l3 := e.attachConn(0, params("s1"), nil)
	if l3.Conn() == c1 {
		t.Fatal("connection with all its credit reserved handed out again")
	}
	s1, s2 := open(t, l1), open(t, l2)
	// Opened: the mux's own count took the credit over; still full.
	l4 := e.attachConn(0, params("s1"), nil)
	if l4.Conn() == c1 {
		t.Fatal("full connection handed out after its callers opened")
	}
	// One opens and finishes, then its lease ends: one credit comes back
	// only when the peer grants it (QUIC credit is cumulative).
	s1.Close()
	l1.Done(nil)
	if got := e.tree(0, c1); got != "" {
		t.Fatalf("conn without credit in %q", got)
	}
	c1.Grant(1)
	l5 := e.attachConn(0, params("s1"), nil)
	if l5.Conn() != c1 {
		t.Fatal("credit granted but connection not reused")
	}
	s5 := open(t, l5)
	if st := e.pool.Stats(); st.Dials != 2 || st.Leases != 4 || st.Reinsertions != 1 {
		t.Fatalf("stats %+v", st)
	}
	s2.Close()
	l2.Done(nil)
	s5.Close()
	l5.Done(nil)
	for _, l := range []lease{l3, l4} {
		l.Done(errReset) // never opened: the reservation is given back
	}
	e.check()
	if st := e.pool.Stats(); st.Leases != 0 || st.Safe != 1 || st.Idle != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Detach of AttachConn leases follows the Attach rules: avail while leased
// with credit left, safe once a request completed, idle otherwise.
func TestAttachConnDetach(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	e.opts = muxtest.Options{MaxStreams: 10, AutoCredit: true}
	l1 := e.attachConn(0, params("s1"), nil)
	l2 := e.attachConn(0, params("s1"), nil)
	c := l1.Conn()
	if l2.Conn() != c {
		t.Fatal("second lease not on the avail connection")
	}
	open(t, l1).Close()
	l1.Done(errReset)
	if got := e.tree(0, c); got != "avail" {
		t.Fatalf("leased conn with credit in %q, want avail", got)
	}
	l2.Done(errReset) // never opened
	if got := e.tree(0, c); got != "idle" {
		t.Fatalf("conn without a completed request in %q, want idle", got)
	}
	l3 := e.attachConn(0, params("s1"), nil)
	if l3.Conn() != c || !l3.Reused() {
		t.Fatal("idle connection not reused")
	}
	open(t, l3).Close()
	l3.Done(nil)
	if got := e.tree(0, c); got != "safe" {
		t.Fatalf("conn with a completed request in %q, want safe", got)
	}
	if mc := c.(*muxtest.Conn); mc.Opened() != 2 || mc.UsedStreams() != 0 {
		t.Fatalf("opened %d used %d", mc.Opened(), mc.UsedStreams())
	}
	e.check()
}

// A dead connection is neither handed out by AttachConn nor kept after its
// last lease; a lease on a connection that dies meanwhile ends normally.
func TestAttachConnDeadConn(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	l := e.attachConn(0, params("s1"), nil)
	l.Done(nil)
	c := l.Conn().(*muxtest.Conn)
	c.Kill(errors.New("idle timeout"))
	l2 := e.attachConn(0, params("s1"), nil)
	if l2.Conn() == c {
		t.Fatal("dead connection handed out")
	}
	c2 := l2.Conn().(*muxtest.Conn)
	c2.Kill(errors.New("reset"))
	if _, err := c2.OpenStream(context.Background()); err == nil {
		t.Fatal("open on a dead connection succeeded")
	}
	l2.Done(errReset)
	if got := e.tree(0, c2); got != "-" {
		t.Fatalf("dead conn still owned after Done (%q)", got)
	}
	if st := e.pool.Stats(); st.Released != 2 || st.Conns != 0 || st.Leases != 0 {
		t.Fatalf("stats %+v", st)
	}
	e.check()
}

// Config.MaxStreams caps the leases of one connection in both modes, below
// the peer's credit.
func TestMaxStreamsPerConn(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways, MaxStreams: 2})
	var ls []lease
	for i := range 5 {
		if i%2 == 0 {
			ls = append(ls, e.attach(0, params("s1"), nil))
		} else {
			ls = append(ls, e.attachConn(0, params("s1"), nil))
		}
	}
	per := map[mux.Conn]int{}
	for _, l := range ls {
		per[l.Conn()]++
	}
	if len(per) != 3 {
		t.Fatalf("5 leases with MaxStreams 2 on %d connections, want 3", len(per))
	}
	ls[0].Done(nil)
	l := e.attach(0, params("s1"), nil) // the freed slot is reused
	if l.Conn() != ls[0].Conn() {
		t.Fatal("connection below MaxStreams again not reused")
	}
	for _, l := range append(ls[1:], l) {
		l.Done(nil)
	}
	if st := e.pool.Stats(); st.Dials != 3 || st.Leases != 0 {
		t.Fatalf("stats %+v", st)
	}
	e.check()
}

// Retry of an AttachConn lease attaches the same way on a fresh connection.
func TestAttachConnRetry(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	w := e.pool.Worker(0)
	l := e.attachConn(0, params("s1"), nil)
	l.Done(nil)
	l = e.attachConn(0, params("s1"), nil)
	old := l.Conn().(*muxtest.Conn)
	old.Kill(errors.New("server closed idle connection"))
	l2, err := w.Retry(context.Background(), l.Lease, errReset)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Conn() == old || l2.Reused() || l2.Stream() != nil {
		t.Fatal("retry not an AttachConn lease on a fresh connection")
	}
	if c := l2.Conn().(*muxtest.Conn); c.Opened() != 0 {
		t.Fatal("retry of an AttachConn lease opened a stream")
	}
	l2.Done(nil)
	if st := e.pool.Stats(); st.Retries != 1 || st.Leases != 0 {
		t.Fatalf("stats %+v", st)
	}
	e.check()
}
