package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/engine/origin"
)

// ErrNoServer is returned when no server of a backend is usable.
var ErrNoServer = errors.New("no usable server")

// ErrPoolFull is returned when a server's connection limit is reached and
// no stream became free before the connect timeout.
var ErrPoolFull = errors.New("backend connection limit reached")

// server is one origin of a backend at run time.
type server struct {
	name   string
	addr   netip.AddrPort
	weight int

	// inflight counts requests and tunnels on this server over all
	// workers (read by leastconn).
	inflight atomic.Int64
	up       atomic.Bool
}

// worker is one data-plane worker: on the xdp data plane it owns one queue's
// port; here it owns the UDP sockets its backend QUIC connections use. Every
// backend pool is per worker, so connection choice never contends across
// workers.
type worker struct {
	id  int
	net Net

	mu  sync.Mutex
	trs map[bool]*quic.Transport // keyed by "is IPv6"
}

// transport returns the worker's QUIC transport for the family of dst,
// opening its socket on first use.
func (w *worker) transport(dst netip.Addr) (*quic.Transport, error) {
	v6 := dst.Is6() && !dst.Is4In6()
	w.mu.Lock()
	defer w.mu.Unlock()
	if tr := w.trs[v6]; tr != nil {
		return tr, nil
	}
	pc, err := w.net.BackendPacketConn(w.id, dst)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: pc}
	if w.trs == nil {
		w.trs = map[bool]*quic.Transport{}
	}
	w.trs[v6] = tr
	return tr, nil
}

func (w *worker) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, tr := range w.trs {
		tr.Close()
		tr.Conn.Close()
	}
	w.trs = nil
}

// backendRT is a configured backend at run time. A reload builds a new one
// and drains the old.
type backendRT struct {
	cfg     Backend
	eng     *Engine
	log     *slog.Logger
	servers []*server
	bal     balancer
	pools   [][]*pool // [worker][server]
	tls     *tls.Config
	quic    *quic.Config
	alpn    string

	// use is held shared by every request and tunnel on this backend;
	// retire takes it exclusively to wait for them after a reload.
	use sync.RWMutex

	stop context.CancelFunc
	wg   sync.WaitGroup
}

func newBackendRT(e *Engine, cfg Backend) (*backendRT, error) {
	rt := &backendRT{cfg: cfg, eng: e, log: e.log.With("backend", cfg.Name)}
	rt.alpn = http3.NextProtoH3
	if cfg.Protocol == BackendRaw {
		rt.alpn = origin.ALPNRaw
	}
	rt.tls = &tls.Config{
		ServerName:         cfg.TLS.ServerName,
		InsecureSkipVerify: cfg.TLS.InsecureSkipVerify,
		NextProtos:         []string{rt.alpn},
		MinVersion:         tls.VersionTLS13,
		// One session cache per backend: resumed handshakes are cheaper.
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
	}
	if cfg.TLS.InsecureSkipVerify {
		rt.log.Warn("backend TLS verification is off (tls.insecure_skip_verify)")
	}
	if cfg.TLS.CA != "" {
		pem, err := os.ReadFile(cfg.TLS.CA)
		if err != nil {
			return nil, fmt.Errorf("backend %s: tls.ca: %w", cfg.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend %s: tls.ca: no PEM certificate in %s", cfg.Name, cfg.TLS.CA)
		}
		rt.tls.RootCAs = pool
	}
	if e.opts.BackendRootCAs != nil && rt.tls.RootCAs == nil {
		rt.tls.RootCAs = e.opts.BackendRootCAs
	}
	idle := cfg.Timeouts.Idle.D()
	rt.quic = &quic.Config{
		HandshakeIdleTimeout: cfg.Timeouts.Connect.D(),
		MaxIdleTimeout:       idle,
		// Keep pooled connections from expiring at the server while we
		// still want them; the pool closes surplus idle ones itself.
		KeepAlivePeriod: idle / 2,
	}
	for _, s := range cfg.Servers {
		srv := &server{name: s.Name, addr: s.addr, weight: s.Weight}
		srv.up.Store(true)
		rt.servers = append(rt.servers, srv)
		e.metrics.serverUp.WithLabelValues(cfg.Name, s.Name).Set(1)
	}
	rt.bal = newBalancer(cfg.Balance, rt.servers)
	rt.pools = make([][]*pool, len(e.workers))
	for wi, w := range e.workers {
		rt.pools[wi] = make([]*pool, len(rt.servers))
		for si, srv := range rt.servers {
			rt.pools[wi][si] = &pool{rt: rt, srv: srv, w: w, wake: make(chan struct{})}
		}
	}
	return rt, nil
}

// start launches the health checks.
func (rt *backendRT) start() {
	ctx, cancel := context.WithCancel(context.Background())
	rt.stop = cancel
	if !*rt.cfg.Health.Enabled {
		return
	}
	for _, srv := range rt.servers {
		rt.wg.Go(func() { rt.healthLoop(ctx, srv) })
	}
}

// close stops health checks and closes pooled connections gracefully: the
// caller has already waited for requests in flight.
func (rt *backendRT) close() {
	if rt.stop != nil {
		rt.stop()
	}
	rt.wg.Wait()
	for _, ps := range rt.pools {
		for _, p := range ps {
			p.closeAll()
		}
	}
}

// usable reports whether server i may take new work.
func (rt *backendRT) usable(i int) bool { return rt.servers[i].up.Load() }

// markDown is passive health: a failed connect takes the server out at once
// (HAProxy's observe layer4 with error-limit 1); active checks bring it back
// after rise successes. Without active checks nothing would, so then the
// server stays in.
func (rt *backendRT) markDown(srv *server, err error) {
	if !*rt.cfg.Health.Enabled {
		return
	}
	if srv.up.CompareAndSwap(true, false) {
		rt.log.Warn("server down (connect failed)", "server", srv.name, "err", err)
		rt.eng.metrics.serverUp.WithLabelValues(rt.cfg.Name, srv.name).Set(0)
		rt.shutdownSessions(srv)
	}
}

// shutdownSessions closes every pooled connection to a server marked down
// (HAProxy's on-marked-down shutdown-sessions): requests waiting on a dead
// server fail now instead of at their timeout, and idempotent ones are
// retried elsewhere.
func (rt *backendRT) shutdownSessions(srv *server) {
	for _, ps := range rt.pools {
		for _, p := range ps {
			if p.srv != srv {
				continue
			}
			p.mu.Lock()
			conns := append([]*bconn(nil), p.conns...)
			p.mu.Unlock()
			for _, c := range conns {
				c.qc.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeInternalError), "server marked down")
			}
		}
	}
}

func (rt *backendRT) healthLoop(ctx context.Context, srv *server) {
	hc := rt.cfg.Health
	t := time.NewTicker(hc.Interval.D())
	defer t.Stop()
	var conn *bconn
	defer func() {
		if conn != nil {
			conn.qc.CloseWithError(0, "")
		}
	}()
	oks, fails := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, hc.Timeout.D())
		err := rt.check(cctx, srv, &conn)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			oks = 0
			fails++
			if conn != nil {
				conn.qc.CloseWithError(0, "")
				conn = nil
			}
			if fails >= hc.Fall && srv.up.CompareAndSwap(true, false) {
				rt.log.Warn("server down (health check)", "server", srv.name, "err", err)
				rt.eng.metrics.serverUp.WithLabelValues(rt.cfg.Name, srv.name).Set(0)
				rt.shutdownSessions(srv)
			}
			continue
		}
		fails = 0
		oks++
		if oks >= hc.Rise && srv.up.CompareAndSwap(false, true) {
			rt.log.Info("server up (health check)", "server", srv.name)
			rt.eng.metrics.serverUp.WithLabelValues(rt.cfg.Name, srv.name).Set(1)
		}
	}
}

// check runs one health check: for h3 a GET of the health path on a kept
// connection (2xx or 3xx passes); for raw a QUIC handshake.
func (rt *backendRT) check(ctx context.Context, srv *server, conn **bconn) error {
	w := rt.eng.workers[0]
	if rt.cfg.Protocol == BackendRaw {
		c, err := rt.dial(ctx, w, srv)
		if err != nil {
			return err
		}
		c.qc.CloseWithError(0, "")
		return nil
	}
	if *conn == nil || context.Cause((*conn).qc.Context()) != nil {
		c, err := rt.dial(ctx, w, srv)
		if err != nil {
			return err
		}
		*conn = c
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+srv.addr.String()+rt.cfg.Health.Path, nil)
	if err != nil {
		return err
	}
	resp, err := (*conn).h3.RoundTrip(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("health check: status %d", resp.StatusCode)
	}
	return nil
}

// dial opens a QUIC connection to srv on worker w's socket.
func (rt *backendRT) dial(ctx context.Context, w *worker, srv *server) (*bconn, error) {
	tr, err := w.transport(srv.addr.Addr())
	if err != nil {
		return nil, err
	}
	if d := rt.cfg.Timeouts.Connect.D(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	tlsConf := rt.tls
	if tlsConf.ServerName == "" {
		tlsConf = tlsConf.Clone()
		tlsConf.ServerName = srv.addr.Addr().String()
	}
	qc, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(srv.addr), tlsConf, rt.quic)
	if err != nil {
		return nil, fmt.Errorf("connect %s (%s): %w", srv.name, srv.addr, err)
	}
	c := &bconn{qc: qc, srv: srv}
	if rt.cfg.Protocol == BackendH3 {
		c.h3 = (&http3.Transport{}).NewClientConn(qc)
	}
	return c, nil
}

// bconn is one backend QUIC connection in a pool.
type bconn struct {
	qc  *quic.Conn
	h3  *http3.ClientConn // nil for raw backends
	srv *server

	// Guarded by the owning pool's mu.
	inflight int
	proven   bool // has carried a request to a response
	dead     bool
}

// pool is the connections of one worker to one server. Only that worker's
// client connections use it, so its mutex is not shared across workers.
type pool struct {
	rt  *backendRT
	srv *server
	w   *worker

	mu      sync.Mutex
	conns   []*bconn
	dialing *dialCall
	wake    chan struct{} // closed (and replaced) when a stream or slot frees
	closed  bool
}

type dialCall struct {
	done chan struct{}
	c    *bconn
	err  error
}

// lease is one request's or tunnel's use of a backend connection.
type lease struct {
	p *pool
	c *bconn
	// private connections (reuse policy never) are closed on release.
	private bool
}

// acquire returns a connection for one request or tunnel, following the
// reuse policy (HAProxy's http-reuse, applied to multiplexed connections):
//
//	never:      a private connection, closed after this use;
//	safe:       a session's first request only on a proven connection or a
//	            new one; later requests on any live connection;
//	aggressive: only proven connections (or a new one);
//	always:     any live connection.
//
// Among eligible connections the oldest with a free stream wins, so load
// packs onto few connections and surplus ones go idle and are closed. With
// none eligible the caller joins a dial in progress or starts one.
func (p *pool) acquire(ctx context.Context, first bool) (*lease, error) {
	rt := p.rt
	policy := rt.cfg.Reuse.Policy
	if policy == ReuseNever {
		c, err := p.dialCounted(ctx)
		if err != nil {
			return nil, err
		}
		return &lease{p: p, c: c, private: true}, nil
	}
	maxStreams := rt.cfg.Reuse.MaxStreams
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, fmt.Errorf("backend %s: %w", rt.cfg.Name, net.ErrClosed)
		}
		for _, c := range p.conns {
			if c.dead || c.inflight >= maxStreams {
				continue
			}
			ok := true
			switch policy {
			case ReuseSafe:
				ok = c.proven || !first
			case ReuseAggressive:
				ok = c.proven
			}
			if ok {
				c.inflight++
				p.mu.Unlock()
				rt.eng.metrics.reused.WithLabelValues(rt.cfg.Name).Inc()
				return &lease{p: p, c: c}, nil
			}
		}
		if d := p.dialing; d != nil {
			p.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if d.err != nil {
				return nil, d.err
			}
			// The new connection is "fresh" for us: take it if it has a
			// free stream, else look again.
			p.mu.Lock()
			if !d.c.dead && d.c.inflight < maxStreams {
				d.c.inflight++
				p.mu.Unlock()
				return &lease{p: p, c: d.c}, nil
			}
			p.mu.Unlock()
			continue
		}
		if lim := rt.cfg.Reuse.MaxConns; lim > 0 && len(p.conns) >= lim {
			wake := p.wake
			p.mu.Unlock()
			t := time.NewTimer(rt.cfg.Timeouts.Connect.D())
			select {
			case <-wake:
				t.Stop()
				continue
			case <-t.C:
				return nil, fmt.Errorf("server %s: %w", p.srv.name, ErrPoolFull)
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			}
		}
		d := &dialCall{done: make(chan struct{})}
		p.dialing = d
		p.mu.Unlock()

		// The dial outlives a caller that gives up: others may be waiting.
		c, err := p.dialCounted(context.WithoutCancel(ctx))
		p.mu.Lock()
		p.dialing = nil
		d.c, d.err = c, err
		if err == nil {
			if p.closed {
				p.mu.Unlock()
				c.qc.CloseWithError(0, "")
				close(d.done)
				return nil, net.ErrClosed
			}
			c.inflight++
			p.conns = append(p.conns, c)
			go p.watch(c)
		}
		p.mu.Unlock()
		close(d.done)
		if err != nil {
			return nil, err
		}
		return &lease{p: p, c: c}, nil
	}
}

func (p *pool) dialCounted(ctx context.Context) (*bconn, error) {
	m := p.rt.eng.metrics
	c, err := p.rt.dial(ctx, p.w, p.srv)
	if err != nil {
		m.connectErrors.WithLabelValues(p.rt.cfg.Name, p.srv.name).Inc()
		return nil, err
	}
	m.connsOpened.WithLabelValues(p.rt.cfg.Name, p.srv.name).Inc()
	m.connsOpen.Inc()
	return c, nil
}

// watch drops c from the pool once it dies.
func (p *pool) watch(c *bconn) {
	<-c.qc.Context().Done()
	p.mu.Lock()
	c.dead = true
	for i, x := range p.conns {
		if x == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			break
		}
	}
	p.signalLocked()
	p.mu.Unlock()
	p.rt.eng.metrics.connsOpen.Dec()
}

func (p *pool) signalLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// release ends a lease. ok says the connection carried the request to a
// response (it is then proven); a broken connection is closed.
func (l *lease) release(ok bool, broken bool) {
	p, c := l.p, l.c
	if l.private {
		if broken {
			c.qc.CloseWithError(0x100, "broken")
		} else {
			c.qc.CloseWithError(0, "")
		}
		p.rt.eng.metrics.connsOpen.Dec()
		return
	}
	var closeIt bool
	p.mu.Lock()
	c.inflight--
	if ok {
		c.proven = true
	}
	if broken {
		c.dead = true
		closeIt = true
	} else if c.inflight == 0 {
		idle := 0
		for _, x := range p.conns {
			if !x.dead && x.inflight == 0 {
				idle++
			}
		}
		if idle > p.rt.cfg.Reuse.MaxIdle {
			c.dead = true
			closeIt = true
		}
	}
	p.signalLocked()
	p.mu.Unlock()
	if closeIt {
		// watch removes it from the pool.
		code := quic.ApplicationErrorCode(http3.ErrCodeNoError)
		if broken {
			code = quic.ApplicationErrorCode(http3.ErrCodeInternalError)
		}
		c.qc.CloseWithError(code, "")
	}
}

// closeAll closes every pooled connection; leases in flight see their
// streams fail.
func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	conns := append([]*bconn(nil), p.conns...)
	p.mu.Unlock()
	for _, c := range conns {
		c.qc.CloseWithError(0, "shutting down")
	}
}

// stats reports the pool's connections: total and idle.
func (p *pool) stats() (open, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if !c.dead {
			open++
			if c.inflight == 0 {
				idle++
			}
		}
	}
	return open, idle
}
