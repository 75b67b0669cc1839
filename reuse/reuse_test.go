package reuse_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/muxtest"
	"github.com/xdpnet/xdpnet/reuse"
)

// env is a pool over fake connections with a manual clock.
type env struct {
	t    testing.TB
	pool *reuse.Pool
	clk  *muxtest.Clock

	mu      sync.Mutex
	conns   []*muxtest.Conn
	opts    muxtest.Options
	dialErr error
	dialed  chan *muxtest.Conn
}

func newEnv(t testing.TB, cfg reuse.Config) *env {
	t.Helper()
	e := &env{t: t, clk: muxtest.NewClock(time.Time{}), opts: muxtest.Options{MaxStreams: 100, AutoCredit: true},
		dialed: make(chan *muxtest.Conn, 1024)}
	cfg.Clock = e.clk
	cfg.Dial = e.dial
	p, err := reuse.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.pool = p
	t.Cleanup(func() { p.Close() })
	return e
}

func (e *env) dial(ctx context.Context, p reuse.Params) (mux.Conn, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dialErr != nil {
		return nil, e.dialErr
	}
	o := e.opts
	o.Kind = p.Kind
	o.Remote = p.Dst
	c := muxtest.NewConn(o)
	e.conns = append(e.conns, c)
	select {
	case e.dialed <- c:
	default:
	}
	return c, nil
}

func (e *env) conn(i int) *muxtest.Conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conns[i]
}

// lease remembers its connection, so tests can name it after Done.
type lease struct {
	reuse.Lease
	c mux.Conn
}

func (l lease) Conn() mux.Conn { return l.c }

func (e *env) attach(w int, p *reuse.Params, s *reuse.Session) lease {
	e.t.Helper()
	l, err := e.pool.Worker(w).Attach(context.Background(), p, s)
	if err != nil {
		e.t.Fatalf("attach: %v", err)
	}
	e.check()
	return lease{l, l.Conn()}
}

func (e *env) check() {
	e.t.Helper()
	for i := 0; i < e.pool.Workers(); i++ {
		if err := reuse.Check(e.pool.Worker(i)); err != nil {
			e.t.Fatalf("worker %d: %v", i, err)
		}
	}
}

// tree returns where worker w keeps c ("" if leased and full, "-" if w does
// not own it).
func (e *env) tree(w int, c mux.Conn) string {
	t, ok := reuse.Owned(e.pool.Worker(w))[c]
	if !ok {
		return "-"
	}
	return t
}

func waitDone(t testing.TB, c mux.Conn) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("connection to %v not closed", c.RemoteAddr())
	}
}

var errReset = errors.New("stream reset by server")

func params(server string) *reuse.Params {
	return &reuse.Params{
		Server: server,
		Kind:   mux.KindQUIC,
		Dst:    netip.MustParseAddrPort("198.18.2.10:443"),
		SNI:    "backend.example",
		ALPN:   "h3",
	}
}

// later returns a session that already sent a request (not on p's server).
func later(e *env, w int) *reuse.Session {
	s := e.pool.Worker(w).NewSession()
	l := e.attach(w, params("warmup"), s)
	l.Done(nil)
	return s
}

func TestSafeHitAfterDetach(t *testing.T) {
	e := newEnv(t, reuse.Config{})
	p := params("s1")
	s := e.pool.Worker(0).NewSession()
	l := e.attach(0, p, s)
	if l.Reused() {
		t.Fatal("fresh connection reported reused")
	}
	c := l.Conn()
	if got := e.tree(0, c); got != "avail" {
		t.Fatalf("leased conn with credit in %q, want avail", got)
	}
	l.Done(nil)
	if got := e.tree(0, c); got != "safe" {
		t.Fatalf("completed idle conn in %q, want safe", got)
	}
	l = e.attach(0, p, s)
	if l.Conn() != c || !l.Reused() {
		t.Fatal("second request did not reuse the safe connection")
	}
	l.Done(nil)
	st := e.pool.Stats()
	if st.Dials != 1 || st.HitSafe != 1 || st.Misses != 1 || st.Attaches != 2 || st.Leases != 0 {
		t.Fatalf("stats %+v", st)
	}
	if st.ReuseRatio() != 0.5 {
		t.Fatalf("reuse ratio %v", st.ReuseRatio())
	}
	// A precomputed Key finds the same connection.
	k := reuse.NewKey(*p)
	if k.Params() != *p {
		t.Fatal("key params differ")
	}
	lk, err := e.pool.Worker(0).AttachKey(context.Background(), k, s)
	if err != nil {
		t.Fatal(err)
	}
	if lk.Conn() != c {
		t.Fatal("AttachKey did not reuse")
	}
	lk.Done(nil)
	if lk.Conn() != nil || lk.Stream() != nil || lk.Reused() || !lk.Valid() {
		t.Fatal("lease accessors after Done")
	}
}

func TestFailedRequestLeavesConnIdle(t *testing.T) {
	e := newEnv(t, reuse.Config{})
	l := e.attach(0, params("s1"), nil)
	l.Done(errReset)
	if got := e.tree(0, l.Conn()); got != "idle" {
		t.Fatalf("conn with no completed request in %q, want idle", got)
	}
}

func TestParamsNeverShareAcrossIdentity(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	base := *params("s1")
	variants := map[string]func(p *reuse.Params){
		"server": func(p *reuse.Params) { p.Server = "s2" },
		"kind":   func(p *reuse.Params) { p.Kind = mux.KindHTTP2 },
		"dst":    func(p *reuse.Params) { p.Dst = netip.MustParseAddrPort("198.18.2.11:443") },
		"port":   func(p *reuse.Params) { p.Dst = netip.MustParseAddrPort("198.18.2.10:8443") },
		"dst6": func(p *reuse.Params) {
			p.Dst = netip.MustParseAddrPort("[::ffff:198.18.2.10]:443") // same 16 bytes, other family
		},
		"src":    func(p *reuse.Params) { p.Src = netip.MustParseAddrPort("198.18.2.1:0") },
		"srcprt": func(p *reuse.Params) { p.Src = netip.MustParseAddrPort("198.18.2.1:4000") },
		"sni":    func(p *reuse.Params) { p.SNI = "other.example" },
		"alpn":   func(p *reuse.Params) { p.ALPN = "h3,h3-29" },
		"proxy":  func(p *reuse.Params) { p.ProxyLine = "PROXY TCP4 198.18.1.2 198.18.2.10 5000 443\r\n" },
		"client": func(p *reuse.Params) { p.ClientID = "sha256:abcd" },
	}
	l := e.attach(0, &base, nil)
	baseConn := l.Conn()
	l.Done(nil)
	for name, mod := range variants {
		p := base
		mod(&p)
		if p.Hash() == base.Hash() {
			t.Errorf("%s: hash does not depend on it", name)
		}
		l := e.attach(0, &p, nil)
		if l.Conn() == baseConn {
			t.Errorf("%s: got a connection made for other parameters", name)
		}
		l.Done(nil)
	}
	same := base
	if l := e.attach(0, &same, nil); l.Conn() != baseConn {
		t.Fatal("equal params did not reuse")
	} else {
		l.Done(nil)
	}
}

func TestHashCollisionComparesParams(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	reuse.SetHash(e.pool, func(*reuse.Params) uint64 { return 42 })
	a, b := params("a"), params("b")
	la := e.attach(0, a, nil)
	la.Done(nil)
	lb := e.attach(0, b, nil)
	if lb.Conn() == la.Conn() {
		t.Fatal("colliding hash handed out a connection for other params")
	}
	lb.Done(nil)
	if l := e.attach(0, a, nil); l.Conn() != la.Conn() {
		t.Fatal("lookup through collision chain failed")
	} else {
		l.Done(nil)
	}
	if l := e.attach(0, b, nil); l.Conn() != lb.Conn() {
		t.Fatal("lookup through collision chain failed")
	} else {
		l.Done(nil)
	}
	if st := e.pool.Stats(); st.Collisions != 1 || st.Dials != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPolicyMatrix checks every cell of policy x (first, later request) x
// the tree the only candidate connection is in.
func TestPolicyMatrix(t *testing.T) {
	type setup func(e *env, s0 *reuse.Session) (c mux.Conn, cleanup func())
	states := map[string]setup{
		"idle": func(e *env, s0 *reuse.Session) (mux.Conn, func()) {
			l := e.attach(0, params("s1"), s0)
			l.Done(errReset)
			return l.Conn(), func() {}
		},
		"safe": func(e *env, s0 *reuse.Session) (mux.Conn, func()) {
			l := e.attach(0, params("s1"), s0)
			l.Done(nil)
			return l.Conn(), func() {}
		},
		"avail-unproven": func(e *env, s0 *reuse.Session) (mux.Conn, func()) {
			l := e.attach(0, params("s1"), s0)
			return l.Conn(), func() { l.Done(nil) }
		},
		"avail-proven": func(e *env, s0 *reuse.Session) (mux.Conn, func()) {
			l := e.attach(0, params("s1"), s0)
			l.Done(nil)
			l2 := e.attach(0, params("s1"), s0) // s0 is past its first request: takes the safe conn
			if l2.Conn() != l.Conn() {
				e.t.Fatal("setup: no reuse")
			}
			return l.Conn(), func() { l2.Done(nil) }
		},
	}
	// want[policy][state] = {first request reuses, later request reuses}
	want := map[reuse.Policy]map[string][2]bool{
		reuse.PolicyNever: {
			"idle": {false, false}, "safe": {false, false}, "avail-unproven": {false, false}, "avail-proven": {false, false},
		},
		reuse.PolicySafe: {
			"idle": {false, true}, "safe": {false, true}, "avail-unproven": {true, true}, "avail-proven": {true, true},
		},
		reuse.PolicyAggressive: {
			"idle": {false, true}, "safe": {true, true}, "avail-unproven": {true, true}, "avail-proven": {true, true},
		},
		reuse.PolicyAlways: {
			"idle": {true, true}, "safe": {true, true}, "avail-unproven": {true, true}, "avail-proven": {true, true},
		},
	}
	for pol, row := range want {
		for state, exp := range row {
			for i, kind := range []string{"first", "later"} {
				t.Run(pol.String()+"/"+state+"/"+kind, func(t *testing.T) {
					e := newEnv(t, reuse.Config{Policy: pol})
					s0 := e.pool.Worker(0).NewSession()
					if pol != reuse.PolicyNever {
						// s0's own first request, so that the setup is a later one.
						e.attach(0, params("warmup"), s0).Done(nil)
					}
					c, cleanup := states[state](e, s0)
					defer cleanup()
					var s *reuse.Session
					if kind == "first" {
						s = e.pool.Worker(0).NewSession()
					} else {
						s = later(e, 0)
					}
					l := e.attach(0, params("s1"), s)
					defer l.Done(nil)
					if got := l.Conn() == c; got != exp[i] {
						t.Fatalf("reused=%v, want %v", got, exp[i])
					}
				})
			}
		}
	}
}

func TestRetryableFirst(t *testing.T) {
	e := newEnv(t, reuse.Config{RetryableFirst: true})
	l := e.attach(0, params("s1"), nil)
	l.Done(errReset) // idle tree
	if l2 := e.attach(0, params("s1"), e.pool.Worker(0).NewSession()); l2.Conn() != l.Conn() {
		t.Fatal("retryable first request did not reuse an idle connection under PolicySafe")
	} else {
		l2.Done(nil)
	}
}

// A retryable request (AttachConnKeyRetryable) is a later one to the policy
// even as its session's first; a plain first request still is not.
func TestAttachRetryableFirst(t *testing.T) {
	e := newEnv(t, reuse.Config{})
	e.opts = muxtest.Options{MaxStreams: 10, AutoCredit: true}
	k := reuse.NewKey(*params("s1"))
	w := e.pool.Worker(0)
	l := e.attachConn(0, params("s1"), nil)
	c := l.Conn()
	open(t, l).Close()
	l.Done(nil)
	if got := e.tree(0, c); got != "safe" {
		t.Fatalf("conn in %q, want safe", got)
	}
	plain, err := w.AttachConnKey(context.Background(), k, w.NewSession())
	if err != nil {
		t.Fatal(err)
	}
	if plain.Conn() == c {
		t.Fatal("a first request reused an idle connection under PolicySafe")
	}
	pc := plain.Conn()
	plain.Done(errReset) // never opened: idle
	r, err := w.AttachConnKeyRetryable(context.Background(), k, w.NewSession())
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Conn(); got != c && got != pc || !r.Reused() {
		t.Fatal("a retryable first request did not reuse an idle connection")
	}
	r.Done(errReset)
	e.check()
}

func TestFullConnDialsInsteadOfBlocking(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	e.opts = muxtest.Options{MaxStreams: 1} // no auto credit: only Grant raises it
	l1 := e.attach(0, params("s1"), nil)
	c1 := l1.Conn().(*muxtest.Conn)
	if got := e.tree(0, c1); got != "" {
		t.Fatalf("full conn in %q", got)
	}
	l2 := e.attach(0, params("s1"), nil)
	if l2.Conn() == c1 {
		t.Fatal("full connection handed out")
	}
	// The peer raises MAX_STREAMS: c1 re-enters avail at once.
	c1.Grant(1)
	l3 := e.attach(0, params("s1"), nil)
	if l3.Conn() != c1 {
		t.Fatal("connection with new credit not reused")
	}
	st := e.pool.Stats()
	if st.Reinsertions != 1 || st.Dials != 2 || st.HitAvail != 1 {
		t.Fatalf("stats %+v", st)
	}
	l1.Done(nil)
	l2.Done(nil)
	l3.Done(nil)
	e.check()
}

func TestDeadConnReleased(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	l := e.attach(0, params("s1"), nil)
	l.Done(nil)
	c := l.Conn().(*muxtest.Conn)
	c.Kill(errors.New("idle timeout"))
	l2 := e.attach(0, params("s1"), nil)
	if l2.Conn() == c {
		t.Fatal("dead connection handed out")
	}
	if got := e.tree(0, c); got != "-" {
		t.Fatalf("dead conn still owned (%q)", got)
	}
	// A connection that dies while leased is released at its last Done.
	c2 := l2.Conn().(*muxtest.Conn)
	c2.Kill(errors.New("reset"))
	if got := e.tree(0, c2); got != "" {
		t.Fatalf("dead leased conn in %q", got)
	}
	l2.Done(errReset)
	if got := e.tree(0, c2); got != "-" {
		t.Fatalf("dead conn still owned after Done (%q)", got)
	}
	if st := e.pool.Stats(); st.Released != 2 || st.Conns != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// flaky fails its next OpenStream as if it died between the pool's checks
// and the open.
type flaky struct {
	*muxtest.Conn
	fail bool
}

func (f *flaky) OpenStream(ctx context.Context) (mux.Stream, error) {
	if f.fail {
		f.fail = false
		f.Conn.Kill(errors.New("died"))
		return nil, errors.New("died")
	}
	return f.Conn.OpenStream(ctx)
}

func TestOpenFailureTriesNext(t *testing.T) {
	var fl *flaky
	n := 0
	clk := muxtest.NewClock(time.Time{})
	pool, err := reuse.New(reuse.Config{Clock: clk, Policy: reuse.PolicyAlways, Dial: func(context.Context, reuse.Params) (mux.Conn, error) {
		n++
		c := muxtest.NewConn(muxtest.Options{MaxStreams: 10, AutoCredit: true})
		if n == 1 {
			fl = &flaky{Conn: c}
			return fl, nil
		}
		return c, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w := pool.Worker(0)
	l, err := w.Attach(context.Background(), params("s1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Done(nil)
	fl.fail = true
	l, err = w.Attach(context.Background(), params("s1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Conn() == mux.Conn(fl) {
		t.Fatal("failed connection used")
	}
	l.Done(nil)
	if st := pool.Stats(); st.OpenErrors != 1 || st.Dials != 2 || st.Released != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := reuse.Check(w); err != nil {
		t.Fatal(err)
	}
}

func TestIdleLimitClosesGracefully(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways, MaxIdlePerServer: 2})
	e.opts = muxtest.Options{MaxStreams: 1, AutoCredit: true}
	var ls []lease
	for range 3 {
		ls = append(ls, e.attach(0, params("s1"), nil))
	}
	for _, l := range ls {
		l.Done(nil)
	}
	waitDone(t, ls[2].Conn()) // the third one is above the idle limit
	if st := e.pool.Stats(); st.Safe != 2 || st.Evictions != 1 || st.Conns != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMaxReuse(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways, MaxReuse: 2})
	l1 := e.attach(0, params("s1"), nil)
	l2 := e.attach(0, params("s1"), nil)
	if l2.Conn() != l1.Conn() {
		t.Fatal("second stream not on the same conn")
	}
	l3 := e.attach(0, params("s1"), nil)
	if l3.Conn() == l1.Conn() {
		t.Fatal("conn used beyond MaxReuse")
	}
	c := l1.Conn().(*muxtest.Conn)
	l1.Done(nil)
	if c.IsShutdown() {
		t.Fatal("closed with a stream in flight")
	}
	l2.Done(nil)
	waitDone(t, c)
	l3.Done(nil)
	e.check()
}

func TestMaxConnsPerServer(t *testing.T) {
	e := newEnv(t, reuse.Config{MaxConnsPerServer: 1, QueueTimeout: 20 * time.Millisecond})
	e.opts = muxtest.Options{MaxStreams: 1}
	l := e.attach(0, params("s1"), nil)
	_, err := e.pool.Worker(0).Attach(context.Background(), params("s1"), nil)
	if !errors.Is(err, reuse.ErrTooManyConns) || !errors.Is(err, reuse.ErrQueueTimeout) {
		t.Fatalf("err %v, want ErrTooManyConns after ErrQueueTimeout", err)
	}
	if st := e.pool.Stats(); st.QueueTimeouts != 1 {
		t.Fatalf("QueueTimeouts = %d, want 1", st.QueueTimeouts)
	}
	l.Done(nil)
}

func TestDialError(t *testing.T) {
	e := newEnv(t, reuse.Config{})
	e.dialErr = muxtest.ErrDialRefused
	_, err := e.pool.Worker(0).Attach(context.Background(), params("s1"), nil)
	if !errors.Is(err, muxtest.ErrDialRefused) {
		t.Fatalf("err %v", err)
	}
	if st := e.pool.Stats(); st.DialErrors != 1 || st.Conns != 0 {
		t.Fatalf("stats %+v", st)
	}
	e.check()
}

func TestDialerReturningNothing(t *testing.T) {
	pool, err := reuse.New(reuse.Config{Dial: func(context.Context, reuse.Params) (mux.Conn, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Worker(0).Attach(context.Background(), params("s1"), nil); err == nil {
		t.Fatal("no error from a dialer that returned nothing")
	}
	if err := reuse.Check(pool.Worker(0)); err != nil {
		t.Fatal(err)
	}
}

func TestStaleDoneIgnored(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	l := e.attach(0, params("s1"), nil)
	l.Done(nil)
	l2 := e.attach(0, params("s1"), nil) // recycles l's record
	l.Done(nil)
	if st := e.pool.Stats(); st.StaleDone != 1 || st.Leases != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := l.MakePrivate(); !errors.Is(err, reuse.ErrStaleLease) {
		t.Fatalf("MakePrivate on stale lease: %v", err)
	}
	l2.Done(nil)
	if st := e.pool.Stats(); st.Leases != 0 {
		t.Fatalf("stats %+v", st)
	}
	var zero reuse.Lease
	zero.Done(nil) // harmless
}

func TestPrivateConnections(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways, MaxSessionConns: 1})
	e.opts = muxtest.Options{MaxStreams: 1, AutoCredit: true}
	w := e.pool.Worker(0)
	s1, s2 := w.NewSession(), w.NewSession()
	l := e.attach(0, params("s1"), s1)
	if err := l.MakePrivate(); err != nil {
		t.Fatal(err)
	}
	c := l.Conn()
	// Another session never gets it.
	l2 := e.attach(0, params("s1"), s2)
	if l2.Conn() == c {
		t.Fatal("private connection shared")
	}
	l2.Done(nil)
	l.Done(nil)
	if got := e.tree(0, c); got != "private" {
		t.Fatalf("private conn in %q", got)
	}
	l3 := e.attach(0, params("s1"), s2)
	if l3.Conn() == c {
		t.Fatal("private connection shared after idle")
	}
	l3.Done(nil)
	l4 := e.attach(0, params("s1"), s1)
	if l4.Conn() != c {
		t.Fatal("session did not get its private connection back")
	}
	// A second private conn for s1 exceeds MaxSessionConns=1 when idle.
	l5 := e.attach(0, params("s1"), s1) // c is full: takes the shared safe conn of s2's requests
	if l5.Conn() == c || l5.Conn() != l3.Conn() {
		t.Fatal("setup: want s2's shared conn")
	}
	if err := l5.MakePrivate(); err != nil {
		t.Fatal(err)
	}
	l4.Done(nil)
	l5.Done(nil)
	if n := len(reuse.SessionConns(s1)); n != 1 {
		t.Fatalf("session keeps %d private conns, limit 1", n)
	}
	waitDone(t, l5.Conn())
	if (reuse.Lease{}).Conn() != nil {
		t.Fatal("zero lease has a conn")
	}
	if err := l.MakePrivate(); !errors.Is(err, reuse.ErrStaleLease) {
		t.Fatalf("MakePrivate after Done: %v", err)
	}
	s1.Close()
	waitDone(t, c)
	if _, err := w.Attach(context.Background(), params("s1"), e.pool.Worker(0).NewSession()); err != nil {
		t.Fatal(err)
	}
	e.check()
}

func TestMakePrivateWithoutSession(t *testing.T) {
	e := newEnv(t, reuse.Config{})
	l := e.attach(0, params("s1"), nil)
	defer l.Done(nil)
	if err := l.MakePrivate(); !errors.Is(err, reuse.ErrNoSession) {
		t.Fatalf("err %v", err)
	}
}

func TestPolicyNever(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyNever})
	w := e.pool.Worker(0)
	s1, s2 := w.NewSession(), w.NewSession()
	l := e.attach(0, params("s1"), s1)
	l.Done(nil)
	if l2 := e.attach(0, params("s1"), s2); l2.Conn() == l.Conn() {
		t.Fatal("never: shared between sessions")
	} else {
		l2.Done(nil)
	}
	if l3 := e.attach(0, params("s1"), s1); l3.Conn() != l.Conn() {
		t.Fatal("never: session lost its own connection")
	} else {
		l3.Done(nil)
	}
	// Without a session the connection serves one request.
	l4 := e.attach(0, params("s1"), nil)
	l4.Done(nil)
	waitDone(t, l4.Conn())
}

func TestForeignSession(t *testing.T) {
	e := newEnv(t, reuse.Config{Workers: 2})
	s := e.pool.Worker(1).NewSession()
	if _, err := e.pool.Worker(0).Attach(context.Background(), params("s1"), s); !errors.Is(err, reuse.ErrForeignSession) {
		t.Fatalf("err %v", err)
	}
}

func TestTakeover(t *testing.T) {
	e := newEnv(t, reuse.Config{Workers: 3})
	l := e.attach(0, params("s1"), nil)
	l.Done(nil)
	c := l.Conn().(*muxtest.Conn)
	// A first request under PolicySafe may not take a safe connection over.
	l1 := e.attach(1, params("s1"), e.pool.Worker(1).NewSession())
	if l1.Conn() == c {
		t.Fatal("first request took over a safe connection under PolicySafe")
	}
	l1.Done(nil)
	s := later(e, 2)
	l2 := e.attach(2, params("s1"), s)
	victim := 0
	if l2.Conn() == l1.Conn() {
		victim, c = 1, l1.Conn().(*muxtest.Conn)
	}
	if l2.Conn() != c {
		t.Fatal("no takeover")
	}
	if e.tree(victim, c) != "-" || e.tree(2, c) != "avail" {
		t.Fatalf("after takeover: victim %q thief %q", e.tree(victim, c), e.tree(2, c))
	}
	l2.Done(nil)
	if got := e.tree(2, c); got != "safe" {
		t.Fatalf("taken conn in %q on its new worker", got)
	}
	if st := e.pool.Worker(2).Stats(); st.Takeovers != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Its death now reaches the new owner.
	c.Kill(errors.New("gone"))
	if st := e.pool.Worker(2).Stats(); st.Released != 1 || e.tree(2, c) != "-" {
		t.Fatalf("stats %+v", st)
	}
	e.check()
}

func TestTakeoverSkipsBusyWorker(t *testing.T) {
	e := newEnv(t, reuse.Config{Workers: 2})
	l := e.attach(0, params("s1"), nil)
	l.Done(nil)
	s := later(e, 1)
	unlock := reuse.LockForTest(e.pool.Worker(0))
	l1, err := e.pool.Worker(1).Attach(context.Background(), params("s1"), s)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	if l1.Conn() == l.Conn() {
		t.Fatal("took over from a locked worker")
	}
	l1.Done(nil)
}

func TestTakeoverDisabledAndPoolLow(t *testing.T) {
	for name, cfg := range map[string]reuse.Config{
		"disabled": {Workers: 2, TakeoverScan: -1},
		"poollow":  {Workers: 2, PoolLowConn: 1},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, cfg)
			l := e.attach(0, params("s1"), nil)
			l.Done(nil)
			s := later(e, 1)
			l1 := e.attach(1, params("s1"), s)
			if l1.Conn() == l.Conn() {
				t.Fatal("took over")
			}
			l1.Done(nil)
		})
	}
}

func TestRetry(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	w := e.pool.Worker(0)
	l := e.attach(0, params("s1"), nil)
	if _, err := w.Retry(context.Background(), l.Lease, errReset); !errors.Is(err, reuse.ErrNotRetryable) {
		t.Fatalf("retry on a fresh conn: %v", err)
	}
	l = e.attach(0, params("s1"), nil)
	if !l.Reused() {
		t.Fatal("not reused")
	}
	old := l.Conn().(*muxtest.Conn)
	old.Kill(errors.New("server closed idle connection"))
	l2, err := w.Retry(context.Background(), l.Lease, errReset)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Conn() == old || l2.Reused() {
		t.Fatal("retry not on a fresh connection")
	}
	l2.Done(nil)
	if _, err := w.Retry(context.Background(), l.Lease, errReset); !errors.Is(err, reuse.ErrStaleLease) {
		t.Fatalf("retry of a done lease: %v", err)
	}
	if st := e.pool.Stats(); st.Retries != 1 || st.Leases != 0 {
		t.Fatalf("stats %+v", st)
	}
	e.check()
}

func TestPoolClose(t *testing.T) {
	e := newEnv(t, reuse.Config{})
	l := e.attach(0, params("s1"), nil)
	l2 := e.attach(0, params("s2"), nil)
	l2.Done(nil)
	e.pool.Close()
	if _, err := e.pool.Worker(0).Attach(context.Background(), params("s1"), nil); !errors.Is(err, reuse.ErrPoolClosed) {
		t.Fatalf("err %v", err)
	}
	waitDone(t, l.Conn())
	waitDone(t, l2.Conn())
	l.Done(errReset)
	if st := e.pool.Stats(); st.Conns != 0 || st.Leases != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConfigErrors(t *testing.T) {
	dial := func(context.Context, reuse.Params) (mux.Conn, error) { return nil, nil }
	for name, cfg := range map[string]reuse.Config{
		"nodial":  {},
		"workers": {Dial: dial, Workers: -1},
		"policy":  {Dial: dial, Policy: 9},
		"low":     {Dial: dial, PoolLowConn: 3, MaxConnsPerServer: 2},
		"age":     {Dial: dial, MaxIdleAge: -1},
		"session": {Dial: dial, MaxSessionConns: -1},
	} {
		if _, err := reuse.New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestAttachSpreadsByCredit: of a server's connections with streams to
// spare, the one whose peer grants the most takes the request, whatever
// the order they re-entered avail in.
func TestAttachSpreadsByCredit(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAlways})
	e.opts = muxtest.Options{MaxStreams: 1} // no auto credit: only Grant raises it
	l1 := e.attach(0, params("s1"), nil)
	l2 := e.attach(0, params("s1"), nil)
	c1, c2 := l1.Conn().(*muxtest.Conn), l2.Conn().(*muxtest.Conn)
	if c1 == c2 {
		t.Fatal("one connection took two streams it had no credit for")
	}
	// The worker applies the credit events last in, first out: c1's
	// last, so c1 ends at the head of avail.
	c1.Grant(2)
	c2.Grant(5)
	l3 := e.attach(0, params("s1"), nil)
	if l3.Conn() != c2 {
		t.Fatal("the connection with less credit took the request")
	}
	for _, l := range []lease{l1, l2, l3} {
		l.Done(nil)
	}
	e.check()
}
