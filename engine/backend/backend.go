package backend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/netapi"
	"github.com/xdpnet/xdpnet/engine/stats"
	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/h3"
	"github.com/xdpnet/xdpnet/mux/httpmux"
	"github.com/xdpnet/xdpnet/mux/quicmux"
	"github.com/xdpnet/xdpnet/reuse"
)

// ErrNoServer is returned when no server of a backend is Usable.
var ErrNoServer = errors.New("no Usable server")

// Server is one origin of a backend at run time.
type Server struct {
	name   string
	addr   netip.AddrPort
	host   string // addr as a URL host
	weight int
	// requests is its xdpnet_backend_requests_total series.
	requests *stats.Counter
	// early holds its session tickets (see dialQUIC).
	early *serverEarly

	// inflight counts requests and tunnels on this server over all
	// workers (read by leastconn).
	inflight atomic.Int64
	up       atomic.Bool
	// connectFails counts connect failures in a row (any worker); a
	// successful dial resets it.
	connectFails atomic.Int32
	// downByTraffic: passive health took the server out, so one passing
	// check brings it back (the failures were seen, not suspected).
	downByTraffic atomic.Bool

	// bmu guards the dial backoff, shared by every worker.
	bmu       sync.Mutex
	dialFails int       // failed dials in a row
	nextDial  time.Time // no dial before this
}

// ErrUnreachable is a dial cut short by an ICMP destination-unreachable
// message on the server's socket (a closed port: the origin is down or
// restarting).
var ErrUnreachable = errors.New("server unreachable (ICMP)")

// errSilent is a connection that answered neither a request nor a PING.
var errSilent = errors.New("server silent")

// ErrBackoff is a dial not attempted: the server failed its last dials and
// the caller could not wait out the backoff.
var ErrBackoff = errors.New("server in reconnect backoff")

// BackoffLeft is how long dials to srv must still wait.
func (srv *Server) BackoffLeft(now time.Time) time.Duration {
	srv.bmu.Lock()
	defer srv.bmu.Unlock()
	return srv.nextDial.Sub(now)
}

// DialFailed pushes the next dial back: min doubled per failure in a row,
// capped at max, with jitter (half to all of it) so that workers and
// gateways do not dial in step.
func (srv *Server) DialFailed(now time.Time, min, max time.Duration) {
	srv.bmu.Lock()
	defer srv.bmu.Unlock()
	srv.dialFails++
	d := max
	if shift := srv.dialFails - 1; shift < 30 && min<<shift < max {
		d = min << shift
	}
	if d > 0 {
		d = d/2 + rand.N(d/2+1)
	}
	srv.nextDial = now.Add(d)
}

// dialOK clears the backoff: the server answers.
func (srv *Server) dialOK() {
	srv.bmu.Lock()
	srv.dialFails, srv.nextDial = 0, time.Time{}
	srv.bmu.Unlock()
}

// Backend is a configured backend at run time: its servers, balancer and
// connection pool (a reuse.Pool with one shard per engine worker). A reload
// builds a new one and retires the old.
type Backend struct {
	cfg     config.Backend
	net     netapi.Net
	tcpRes  TCPReserver  // nil: no budget for dialled TCP connections
	quicRes QUICReserver // nil: no budget for dialled QUIC connections
	m       *stats.Counters
	log     *slog.Logger
	servers []*Server
	byName  map[string]*Server
	keys    []*reuse.Key // per server: its connection Params, hashed once
	bal     balancer
	pool    *reuse.Pool
	roots   *x509.CertPool
	alpn    string
	muxCfg  quicmux.Config
	// proto is the HTTP version of a backend over TCP (h2, h2c, http1,
	// http1-tls), 0 for QUIC ones; tcpTLS says it runs over TLS.
	proto  httpmux.Proto
	tcpTLS bool

	// users counts the requests and tunnels using the backend
	// (Use, Release); once retiring is set, the last Release
	// closes idle, for which Retire waits.
	users    atomic.Int64
	retiring atomic.Bool
	idle     chan struct{}
	idleOnce sync.Once

	// trMu guards the per-worker QUIC transports (one UDP socket per
	// worker and address family, or per worker and server on stacks that
	// implement netapi.ServerConnector) and the live connections per server,
	// whose silent ones closeSilent closes when a server goes down.
	trMu   sync.Mutex
	trs    map[trKey]*quicmux.Transport
	live   map[*Server]map[*Conn]struct{}
	closed bool

	// ctx ends with close (stop): health checks, pool timers and the
	// watchers of the servers' sockets, all joined by wg.
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

type trKey struct {
	worker int
	v6     bool
	server netip.AddrPort // zero for a socket shared by every server
}

type workerKey struct{}

// WithWorker tells the pool's dialer which worker's socket to use.
func WithWorker(ctx context.Context, w int) context.Context {
	return context.WithValue(ctx, workerKey{}, w)
}

// Env is what a backend needs of the engine that runs it.
type Env struct {
	// Net opens the backend's sockets; Workers is the number of pool
	// shards (one per engine worker).
	Net     netapi.Net
	Workers int
	Log     *slog.Logger
	// RootCAs is trusted when the backend's tls.ca is unset; nil means
	// the system roots.
	RootCAs *x509.CertPool
	// Counters receives the backend's counts.
	Counters *stats.Counters
	// TCP, when set, reserves the netstack buffers of each HTTP/2 and
	// HTTP/1.1 connection in the engine's memory budget (the frontend's
	// TCPBudget).
	TCP TCPReserver
	// QUIC, when set, reserves the buffers of each QUIC connection (h3
	// and raw backends, health checks' too) in the same budget.
	QUIC QUICReserver
	// QUICWindows are the receive windows of its QUIC connections
	// (buffers.quic_receive), what QUIC reserves for.
	QUICWindows config.QUICWindows
}

// TCPReserver reserves a dialled TCP connection's buffers in the memory
// budget.
type TCPReserver interface {
	// ReserveDial reserves them, waiting until ctx ends when the budget
	// is spent; release (nil when nothing is reserved, as on the kernel
	// stack) gives them back, once, however often it is called.
	ReserveDial(ctx context.Context) (release func(), err error)
}

// New builds the backend of cfg (validated). Start starts its timers and
// health checks; Close ends it.
func New(cfg config.Backend, env Env) (*Backend, error) {
	rt := &Backend{
		cfg: cfg, net: env.Net, m: env.Counters, log: env.Log.With("backend", cfg.Name), tcpRes: env.TCP, quicRes: env.QUIC,
		byName: map[string]*Server{},
		trs:    map[trKey]*quicmux.Transport{},
		idle:   make(chan struct{}),
		live:   map[*Server]map[*Conn]struct{}{},
	}
	rt.ctx, rt.stop = context.WithCancel(context.Background())
	rt.alpn, rt.roots = quicmux.ALPNH3, env.RootCAs
	kind := mux.KindQUIC
	switch cfg.Protocol {
	case config.BackendRaw:
		rt.alpn = quicmux.ALPNRaw
	case config.BackendH2, config.BackendH2C:
		rt.proto, rt.tcpTLS, rt.alpn, kind = httpmux.HTTP2, cfg.Protocol == config.BackendH2, "h2", mux.KindHTTP2
	case config.BackendHTTP1, config.BackendHTTP1TLS:
		rt.proto, rt.tcpTLS, rt.alpn, kind = httpmux.HTTP1, cfg.Protocol == config.BackendHTTP1TLS, "http/1.1", mux.KindHTTP1
	}
	if rt.proto != 0 && !rt.tcpTLS {
		rt.alpn = "" // cleartext: no ALPN, and a distinct pool key
	}
	if cfg.TLS.CA != "" {
		roots, err := quicmux.LoadCertPool(cfg.TLS.CA)
		if err != nil {
			return nil, fmt.Errorf("backend %s: tls.ca: %w", cfg.Name, err)
		}
		rt.roots = roots
	}
	if cfg.TLS.InsecureSkipVerify {
		rt.log.Warn("backend TLS verification is off (tls.insecure_skip_verify)")
	}
	rt.muxCfg = quicmux.Config{
		HandshakeTimeout: cfg.Timeouts.Connect.D(),
		IdleTimeout:      cfg.Timeouts.Idle.D(),
		// Keep pooled connections open at the server while we want them;
		// the pool closes surplus idle ones itself.
		KeepAlive: cfg.Timeouts.Idle.D() / 3,

		InitialStreamReceiveWindow:     env.QUICWindows.Stream,
		MaxStreamReceiveWindow:         env.QUICWindows.StreamMax,
		InitialConnectionReceiveWindow: env.QUICWindows.Conn,
		MaxConnectionReceiveWindow:     env.QUICWindows.ConnMax,
	}
	for _, s := range cfg.Servers {
		sni := cfg.TLS.ServerName
		if sni == "" {
			sni = s.Addr().Addr().String()
		}
		srv := &Server{name: s.Name, addr: s.Addr(), host: s.Addr().String(), weight: *s.Weight,
			requests: env.Counters.BackendRequests.WithLabelValues(cfg.Name, s.Name),
			early:    newServerEarly(env.Counters, cfg.Name, s.Name, sni)}
		srv.up.Store(true)
		rt.servers = append(rt.servers, srv)
		rt.byName[s.Name] = srv
		rt.keys = append(rt.keys, reuse.NewKey(reuse.Params{
			Server: cfg.Name + "/" + s.Name, Kind: kind, Dst: s.Addr(), SNI: sni, ALPN: rt.alpn,
		}))
		env.Counters.ServerUp.WithLabelValues(cfg.Name, s.Name).Set(1)
	}
	rt.bal = newBalancer(cfg.Balance, rt.servers)
	policy := map[string]reuse.Policy{
		config.ReuseNever: reuse.PolicyNever, config.ReuseSafe: reuse.PolicySafe,
		config.ReuseAggressive: reuse.PolicyAggressive, config.ReuseAlways: reuse.PolicyAlways,
	}[cfg.Reuse.Policy]
	pool, err := reuse.New(reuse.Config{
		Workers: env.Workers,
		Policy:  policy,
		// On HTTP/3 a session's first request is as safe on an established
		// connection as a later one: the server says when it did not
		// process a request (H3_REQUEST_REJECTED, a GOAWAY below its
		// stream, RFC 9114 sections 4.1.1 and 5.2), and the engine
		// retries exactly those on another connection, and anything
		// idempotent that died with its reused connection (see
		// the frontends' proxy). HTTP/2 over TCP says the same with GOAWAY
		// and REFUSED_STREAM (RFC 9113 sections 6.8 and 8.7). HTTP/1.1
		// cannot tell a request the server dropped as it closed an idle
		// connection from one it processed, and tunnels (raw) cannot
		// replay their bytes: both keep HAProxy's rule.
		RetryableFirst:    rt.alpn == quicmux.ALPNH3 || rt.proto == httpmux.HTTP2,
		Dial:              rt.dialPooled,
		MaxIdlePerServer:  cfg.Reuse.MaxIdle,
		MaxConnsPerServer: cfg.Reuse.MaxConns,
		MaxStreams:        cfg.Reuse.MaxStreams,
		MaxDialsPerServer: cfg.Reuse.MaxDials,
		QueueTimeout:      cfg.Timeouts.Queue.D(),
		MaxIdleAge:        maxIdleAge(cfg.Timeouts.Idle.D()),
	})
	if err != nil {
		return nil, fmt.Errorf("backend %s: pool: %w", cfg.Name, err)
	}
	rt.pool = pool
	return rt, nil
}

// maxIdleAge is how long the pool keeps a connection idle: a quarter less
// than the idle timeout, which the servers are expected to apply too (our
// keep-alive PINGs hold the QUIC connection open, not an HTTP/3 server's
// wait for the next request). The margin covers the pool's Tick period and
// the flight of a request sent just before the pool would have closed the
// connection, so a request does not meet a server closing it for idleness.
func maxIdleAge(idle time.Duration) time.Duration { return idle - idle/4 }

// Attach leases a connection to server si on worker w: for HTTP backends
// one unit of its stream credit, the request's stream being opened by the
// connection's HTTP client (Conn.RoundTrip); for raw ones a stream.
// retryable says the caller sends the request again on a fresh connection
// (Retry) if its connection dies before any response byte: then a
// session's first request may take an idle HTTP/1.1 connection under the
// safe policy too (reuse.Worker.AttachConnKeyRetryable).
func (rt *Backend) Attach(ctx context.Context, w, si int, s *reuse.Session, retryable bool) (reuse.Lease, error) {
	if rt.alpn != quicmux.ALPNRaw {
		if retryable {
			return rt.pool.Worker(w).AttachConnKeyRetryable(ctx, rt.keys[si], s)
		}
		return rt.pool.Worker(w).AttachConnKey(ctx, rt.keys[si], s)
	}
	return rt.pool.Worker(w).AttachKey(ctx, rt.keys[si], s)
}

// Start launches the pool's timers and the health checks.
func (rt *Backend) Start() {
	ctx := rt.ctx
	rt.wg.Go(func() { rt.pool.Run(ctx, 250*time.Millisecond) })
	if !*rt.cfg.Health.Enabled {
		return
	}
	for _, srv := range rt.servers {
		rt.wg.Go(func() { rt.healthLoop(ctx, srv) })
	}
}

// Close stops timers and health checks and closes every connection; the
// caller has waited for the requests in flight.
func (rt *Backend) Close() {
	rt.stop()
	// No transport, and so no watcher, starts once closed is set.
	rt.trMu.Lock()
	rt.closed = true
	trs := rt.trs
	rt.trs = nil
	rt.trMu.Unlock()
	rt.wg.Wait()
	rt.pool.Close()
	for _, tr := range trs {
		tr.Close()
	}
}

// Usable reports whether server i may take new work.
func (rt *Backend) Usable(i int) bool { return rt.servers[i].up.Load() }

// Pick chooses the server for attempt n (0 first) of a request or
// tunnel: a Usable one not excluded by an earlier failure; when every Usable
// server was tried, any Usable one, rather than fail while retries remain
// (HAProxy retries the same server when redispatch has nowhere else to go).
// It counts retries and redispatches; false means no server is Usable.
func (rt *Backend) Pick(attempt int, key []byte, excluded []bool) (int, bool) {
	m := rt.m
	if attempt > 0 {
		m.Retries.WithLabelValues(rt.cfg.Name).Inc()
	}
	// Prefer a server that is not backing off after failed dials; if all
	// are, one of them will be dialled once its backoff ends.
	now := time.Now()
	si, ok := rt.bal.pick(key, func(i int) bool {
		return rt.Usable(i) && !excluded[i] && rt.servers[i].BackoffLeft(now) <= 0
	})
	if !ok {
		si, ok = rt.bal.pick(key, func(i int) bool { return rt.Usable(i) && !excluded[i] })
	}
	if !ok {
		clear(excluded)
		if si, ok = rt.bal.pick(key, rt.Usable); !ok {
			return 0, false
		}
	}
	if attempt > 0 && *rt.cfg.Redisp {
		m.Redispatches.WithLabelValues(rt.cfg.Name).Inc()
	}
	return si, true
}

// ConnectFailed is passive health: Fall connect failures in a row take the
// server out (HAProxy's observe layer4 with on-error mark-down and
// error-limit Fall); active checks bring it back, after one success since
// the failures were seen (Rise applies to servers the checks took out).
// One slow handshake on a loaded machine must not drop every connection
// to a healthy server, so a single failure only counts.
//
// Only failures the server caused count (serverCaused): refused (ICMP
// unreachable, QUIC CONNECTION_REFUSED, a stateless reset), a handshake
// that failed or ran out its own connect timeout. What the gateway did
// itself does not: a request that waited in the queue and gave up, a
// connection limit, the reconnect backoff, a client that went away, a
// pool closed by a reload.
func (rt *Backend) ConnectFailed(srv *Server, err error) {
	if !serverCaused(err) {
		return
	}
	if int(srv.connectFails.Add(1)) >= rt.cfg.Health.Fall {
		rt.markDown(srv, "connect failed", err, true)
	}
}

// serverCaused reports whether a failed Attach says the server is at fault
// (see ConnectFailed). A request an HTTP/2 server rejected unprocessed
// (GOAWAY, REFUSED_STREAM) is the server managing its connections, not
// failing.
func serverCaused(err error) bool {
	return !errors.Is(err, reuse.ErrTooManyConns) && !errors.Is(err, reuse.ErrQueueTimeout) &&
		!errors.Is(err, httpmux.ErrRejected) &&
		!errors.Is(err, reuse.ErrPoolClosed) &&
		!errors.Is(err, ErrBackoff) && !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) &&
		!errors.Is(err, ErrBudget)
}

// markDown takes srv out of balancing and closes its connections. Without
// active checks nothing would bring it back, so then the server stays in.
// byTraffic says passive health decided it.
func (rt *Backend) markDown(srv *Server, why string, err error, byTraffic bool) {
	if !*rt.cfg.Health.Enabled {
		return
	}
	if srv.up.CompareAndSwap(true, false) {
		srv.downByTraffic.Store(byTraffic)
		rt.log.Warn("server down", "server", srv.name, "why", why, "err", err)
		rt.m.ServerUp.WithLabelValues(rt.cfg.Name, srv.name).Set(0)
		rt.closeSilent(srv)
	}
}

// closeSilent closes, in the background, the connections to a server
// marked down that no longer answer (see answers): requests waiting on a
// dead server fail now instead of at their timeout, and idempotent ones
// are retried elsewhere. Connections that answer keep the streams they
// carry: a server can fail its checks (an error status, an overloaded
// health endpoint) while transfers on it progress, and cutting them would
// lose them. It takes no new work while down (Pick). This is HAProxy's
// and Envoy's default of leaving established sessions alone, with dead
// ones found at once.
func (rt *Backend) closeSilent(srv *Server) {
	rt.trMu.Lock()
	defer rt.trMu.Unlock()
	if rt.closed {
		return
	}
	rt.wg.Go(func() {
		dead, probed := rt.silentConns(srv)
		if len(dead) > 0 {
			rt.log.Info("closing silent connections to a server marked down", "server", srv.name, "closed", len(dead), "probed", probed)
		}
		for _, c := range dead {
			c.Close()
		}
	})
}

// silentConns pings every connection to srv at once (see answers) and
// returns those that stayed silent, and how many were probed.
func (rt *Backend) silentConns(srv *Server) (dead []*Conn, probed int) {
	conns := rt.liveConns(srv)
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, c := range conns {
		wg.Go(func() {
			if !rt.answers(c) {
				mu.Lock()
				dead = append(dead, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return dead, len(conns)
}

// liveConns are the connections to srv that are open now.
func (rt *Backend) liveConns(srv *Server) []*Conn {
	rt.trMu.Lock()
	defer rt.trMu.Unlock()
	conns := make([]*Conn, 0, len(rt.live[srv]))
	for c := range rt.live[srv] {
		conns = append(conns, c)
	}
	return conns
}

func (rt *Backend) healthLoop(ctx context.Context, srv *Server) {
	hc := rt.cfg.Health
	t := time.NewTicker(hc.Interval.D())
	defer t.Stop()
	var conn *Conn
	defer func() {
		if conn != nil {
			conn.Close()
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
		if errors.Is(err, ErrBudget) {
			// No room in the memory budget for the check's connection:
			// that says nothing of the server.
			continue
		}
		if err != nil {
			oks = 0
			fails++
			if conn != nil {
				conn.Close()
				conn = nil
			}
			if fails >= hc.Fall {
				rt.markDown(srv, "health check", err, false)
			}
			continue
		}
		fails = 0
		oks++
		srv.dialOK() // it answers: dial it again at once
		if (oks >= hc.Rise || srv.downByTraffic.Load()) && srv.up.CompareAndSwap(false, true) {
			srv.connectFails.Store(0)
			rt.log.Info("server up (health check)", "server", srv.name)
			rt.m.ServerUp.WithLabelValues(rt.cfg.Name, srv.name).Set(1)
		}
	}
}

// check runs one health check on worker 0's socket, outside the pool: for
// HTTP backends a GET of the health path on a kept connection (2xx or 3xx
// passes), for raw a QUIC handshake.
func (rt *Backend) check(ctx context.Context, srv *Server, conn **Conn) error {
	if *conn == nil || !(*conn).Alive() {
		c, err := rt.dial(withoutEarly(ctx), 0, srv)
		if err != nil {
			return err
		}
		if rt.cfg.Protocol == config.BackendRaw {
			c.Close()
			return nil
		}
		*conn = c
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+srv.addr.String()+rt.cfg.Health.Path, nil)
	if err != nil {
		return err
	}
	resp, err := (*conn).RoundTrip(req)
	if err != nil {
		return err
	}
	// Read to the end so that an HTTP/1.1 connection stays open.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("health check: status %d", resp.StatusCode)
	}
	return nil
}

// connectedPacketConn opens worker w's UDP socket connected to dst on sc,
// as the net.PacketConn quic-go needs.
func connectedPacketConn(sc netapi.ServerConnector, w int, dst netip.AddrPort) (net.PacketConn, error) {
	c, err := sc.DialBackend(w, dst)
	if err != nil {
		return nil, err
	}
	pc, err := quicmux.ConnectedPacketConn(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return pc, nil
}

// transport returns worker w's QUIC transport towards dst (shared by the
// servers of dst's address family unless the stack connects a socket per
// server), opening its UDP socket on first use.
func (rt *Backend) transport(w int, dst netip.AddrPort) (*quicmux.Transport, error) {
	k := trKey{worker: w, v6: dst.Addr().Is6() && !dst.Addr().Is4In6()}
	sc, perServer := rt.net.(netapi.ServerConnector)
	if perServer {
		k.server = dst
	}
	rt.trMu.Lock()
	defer rt.trMu.Unlock()
	if rt.closed {
		return nil, net.ErrClosed
	}
	if tr := rt.trs[k]; tr != nil {
		err := tr.Err()
		if err == nil {
			return tr, nil
		}
		// Never hand out a dead transport: every dial on it would fail
		// at once. Its connections died with it.
		rt.log.Warn("backend socket failed; opening a new one", "worker", w, "dst", dst, "err", err)
		rt.m.SocketsReplaced.WithLabelValues(rt.cfg.Name).Inc()
		delete(rt.trs, k)
		tr.Close()
	}
	var pc net.PacketConn
	var err error
	if perServer {
		pc, err = connectedPacketConn(sc, w, dst)
	} else {
		pc, err = rt.net.BackendPacketConn(w, dst.Addr())
	}
	if err != nil {
		return nil, err
	}
	cfg := rt.muxCfg
	cfg.InitialPacketSize = netapi.QUICPacketSize(rt.net, dst.Addr())
	tr := quicmux.NewTransport(pc, cfg)
	rt.trs[k] = tr
	if perServer {
		for _, srv := range rt.servers {
			if srv.addr == dst {
				rt.wg.Go(func() { rt.watchUnreachable(srv, tr) })
			}
		}
	}
	return tr, nil
}

// watchUnreachable probes srv's connections after each ICMP unreachable on
// tr, a socket of srv's own, until tr or the backend closes.
func (rt *Backend) watchUnreachable(srv *Server, tr *quicmux.Transport) {
	for {
		select {
		case <-tr.UnreachableNotify():
		case <-tr.Done():
			return
		case <-rt.ctx.Done():
			return
		}
		rt.probeConns(srv)
	}
}

// answers reports whether c shows any sign of life within
// health_check.timeout: its PING acknowledged or, on QUIC, any packet
// received meanwhile. Only a connection silent for that whole time counts
// as dead. A shorter window (a few RTTs) confused a gateway or an origin
// short of CPU with a dead one: under overload it closed live connections
// with every response they carried, and marked their servers down (the
// dial-storm test at load 14). False only if c stayed silent while the
// backend is open.
func (rt *Backend) answers(c *Conn) bool {
	ctx, cancel := context.WithTimeout(rt.ctx, rt.cfg.Health.Timeout.D())
	defer cancel()
	if c.http != nil {
		// httpmux's Ping counts any progress of the socket as an answer.
		return c.Ping(ctx) == nil || rt.ctx.Err() != nil
	}
	q := c.quic.QUIC()
	before := q.ConnectionStats()
	received := func() bool { return q.ConnectionStats().PacketsReceived > before.PacketsReceived }
	pinged := make(chan error, 1)
	go func() { pinged <- c.Ping(ctx) }() // ends with ctx at the latest
	// Packets are looked for every three probe timeouts of the
	// connection's RTT estimate (RFC 9002 section 6.2.1), at least 20ms.
	pto := before.SmoothedRTT + max(4*before.MeanDeviation, time.Millisecond)
	tick := time.NewTicker(max(3*pto, 20*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case err := <-pinged:
			return err == nil || rt.ctx.Err() != nil || received()
		case <-tick.C:
			if received() {
				return true
			}
		}
	}
}

// Suspect checks c, on which a request has waited timeouts.probe for its
// response headers, in the background (once at a time per connection):
// if c does not answer a PING (see answers), its server died or vanished
// without a word (a SIGKILL behind a socket that reports no ICMP, a
// blackhole), and c is closed so that its requests fail now and are
// retried, instead of each waiting out the request timeout. Envoy's and
// gRPC's HTTP/2 keepalive timeouts do the same for silent peers.
func (rt *Backend) Suspect(srv *Server, c *Conn) {
	if !c.probing.CompareAndSwap(false, true) {
		return
	}
	rt.trMu.Lock()
	defer rt.trMu.Unlock()
	if rt.closed {
		return
	}
	rt.wg.Go(func() {
		defer c.probing.Store(false)
		if rt.answers(c) {
			return
		}
		rt.m.SilentConns.WithLabelValues(rt.cfg.Name, srv.name).Inc()
		rt.log.Info("closing a backend connection that answered neither a request nor a PING", "server", srv.name)
		srv.DialFailed(time.Now(), rt.cfg.Timeouts.BackoffMin.D(), rt.cfg.Timeouts.BackoffMax.D())
		rt.ConnectFailed(srv, errSilent)
		c.Close()
	})
}

// probeConns pings every connection to srv (see answers) and closes those
// that do not answer: after an ICMP unreachable the
// server process may be gone, and requests waiting on its connections
// should fail now (and be retried elsewhere) rather than at their
// timeout. A PING rather than trusting the ICMP message: it may be stale
// or spoofed (RFC 9000 section 14.2.1), and a live peer answers. A round in
// which some connections failed counts once for passive health and starts
// the reconnect backoff; one in which all did takes the server out.
func (rt *Backend) probeConns(srv *Server) {
	dead, probed := rt.silentConns(srv)
	if len(dead) == 0 {
		return
	}
	rt.log.Info("closing backend connections that did not answer after an ICMP unreachable", "server", srv.name, "closed", len(dead), "probed", probed)
	// Backoff and health first: the requests the closes fail must not
	// redial the server (Worker.Retry) but go elsewhere.
	srv.DialFailed(time.Now(), rt.cfg.Timeouts.BackoffMin.D(), rt.cfg.Timeouts.BackoffMax.D())
	defer func() {
		for _, c := range dead {
			c.Close()
		}
	}()
	if len(dead) < probed {
		rt.ConnectFailed(srv, ErrUnreachable)
		return
	}
	// Every connection is dead and the port is closed: the process is
	// gone. Dials would now wait out their connect timeout, since the
	// kernel rate-limits the ICMP errors that could end them early
	// (icmp_ratelimit), so take the server out at once (HAProxy's
	// on-error mark-down); one passing check brings it back.
	rt.markDown(srv, "connections dead after ICMP unreachable", ErrUnreachable, true)
}

// dialPooled is the pool's dialer: the worker comes from the context.
func (rt *Backend) dialPooled(ctx context.Context, p reuse.Params) (mux.Conn, error) {
	w, _ := ctx.Value(workerKey{}).(int)
	srv := rt.byName[p.Server[len(rt.cfg.Name)+1:]]
	if srv == nil {
		return nil, fmt.Errorf("pool asked for unknown server %q", p.Server)
	}
	c, err := dialAccounted(ctx, rt, srv, func() (*Conn, error) { return rt.dial(ctx, w, srv) })
	if err != nil {
		return nil, err
	}
	m := rt.m
	rt.trMu.Lock()
	defer rt.trMu.Unlock()
	if rt.closed { // the pool closes it: ErrPoolClosed
		m.ConnsOpen.Dec()
		return c, nil
	}
	if rt.live[srv] == nil {
		rt.live[srv] = map[*Conn]struct{}{}
	}
	rt.live[srv][c] = struct{}{}
	rt.wg.Go(func() { // forgets c when it dies, or when the backend closes (the pool closes c then)
		select {
		case <-c.Done():
		case <-rt.ctx.Done():
		}
		m.ConnsOpen.Dec()
		rt.trMu.Lock()
		delete(rt.live[srv], c)
		rt.trMu.Unlock()
	})
	return c, nil
}

// dialAccounted dials srv with dial once its backoff allows, and keeps the
// account of it: a failure counts in the connect errors and, when the
// server caused it, backs the server off; a success clears that and counts
// a connection opened and open (the caller closes the account with
// ConnsOpen.Dec).
func dialAccounted[C any](ctx context.Context, rt *Backend, srv *Server, dial func() (C, error)) (C, error) {
	var none C
	if err := rt.waitBackoff(ctx, srv); err != nil {
		return none, err
	}
	c, err := dial()
	m := rt.m
	if err != nil {
		m.ConnectErrors.WithLabelValues(rt.cfg.Name, srv.name).Inc()
		if serverCaused(err) {
			srv.DialFailed(time.Now(), rt.cfg.Timeouts.BackoffMin.D(), rt.cfg.Timeouts.BackoffMax.D())
		}
		return none, err
	}
	srv.dialOK()
	srv.connectFails.Store(0)
	m.ConnsOpened.WithLabelValues(rt.cfg.Name, srv.name).Inc()
	m.ConnsOpen.Inc()
	return c, nil
}

// waitBackoff waits until srv may be dialled again, or fails with
// ErrBackoff at once if ctx would end first.
func (rt *Backend) waitBackoff(ctx context.Context, srv *Server) error {
	left := srv.BackoffLeft(time.Now())
	if left <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < left {
		return fmt.Errorf("%s: %w", srv.name, ErrBackoff)
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// dial opens a QUIC connection to srv on worker w's socket, with an HTTP/3
// client session on it for h3 backends. On a socket of srv's own (the
// netstack's connected sockets), an ICMP unreachable ends the dial at once
// with ErrUnreachable.
func (rt *Backend) dial(ctx context.Context, w int, srv *Server) (*Conn, error) {
	if rt.proto != 0 {
		return rt.dialTCP(ctx, w, srv)
	}
	tr, err := rt.transport(w, srv.addr)
	if err != nil {
		return nil, err
	}
	if d := rt.cfg.Timeouts.Connect.D(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if _, perServer := rt.net.(netapi.ServerConnector); perServer {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		unreachable := tr.UnreachableNotify()
		stop := make(chan struct{})
		defer close(stop)
		go func() { // ends with the dial
			select {
			case <-unreachable:
				cancel(ErrUnreachable)
			case <-stop:
			}
		}()
	}
	sni := rt.cfg.TLS.ServerName
	if sni == "" {
		sni = srv.addr.Addr().String()
	}
	tlsConf := quicmux.ClientTLS(sni, rt.roots, rt.alpn)
	tlsConf.InsecureSkipVerify = rt.cfg.TLS.InsecureSkipVerify
	var release func()
	if rt.quicRes != nil {
		if release, err = rt.quicRes.ReserveDial(ctx); err != nil {
			return nil, fmt.Errorf("connect %s (%s): %w", srv.name, srv.addr, err)
		}
	}
	qc, err := rt.dialQUIC(ctx, tr, srv, tlsConf)
	if err != nil {
		if release != nil {
			release()
		}
		if cause := context.Cause(ctx); errors.Is(cause, ErrUnreachable) {
			err = cause
		}
		return nil, fmt.Errorf("connect %s (%s): %w", srv.name, srv.addr, err)
	}
	if release != nil {
		// quic-go ends a connection's context when the connection ends,
		// whichever way (closed by us, the peer, an idle timeout, its
		// transport closing): the reservation lasts as long.
		context.AfterFunc(qc.QUIC().Context(), release)
	}
	c := &Conn{Conn: qc, quic: qc}
	if rt.cfg.EarlyData {
		c.early = srv
	}
	if rt.alpn == quicmux.ALPNH3 {
		// Responses go to clients as they are: no transparent gzip.
		c.h3, err = h3.NewClient(qc, &http3.Transport{DisableCompression: true})
		if err != nil {
			qc.Close()
			return nil, err
		}
	}
	return c, nil
}

// dialTCP opens an HTTP/2 or HTTP/1.1 connection to srv over worker w's
// network (netstack TCP on the data plane), with TLS (clientTLS) when the
// protocol says so.
func (rt *Backend) dialTCP(ctx context.Context, w int, srv *Server) (*Conn, error) {
	if d := rt.cfg.Timeouts.Connect.D(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	tcp, err := rt.dialSocket(ctx, w, srv)
	if err != nil {
		return nil, err
	}
	o := httpmux.Options{Proto: rt.proto}
	if rt.tcpTLS {
		o.TLS = rt.clientTLS(srv)
	}
	hc, err := httpmux.Dial(ctx, tcp, o)
	if err != nil {
		return nil, fmt.Errorf("connect %s (%s): %w", srv.name, srv.addr, err)
	}
	if hc.Resumed() {
		srv.early.resumed.Inc()
	}
	return &Conn{Conn: hc, http: hc}, nil
}

// dialSocket opens a TCP connection to srv over worker w's network, with
// its reservation in the memory budget, which its Close gives back.
func (rt *Backend) dialSocket(ctx context.Context, w int, srv *Server) (net.Conn, error) {
	var release func()
	if rt.tcpRes != nil {
		var err error
		if release, err = rt.tcpRes.ReserveDial(ctx); err != nil {
			return nil, fmt.Errorf("connect %s (%s): %w", srv.name, srv.addr, err)
		}
	}
	tcp, err := rt.net.DialTCP(ctx, w, srv.addr)
	if err != nil {
		if release != nil {
			release()
		}
		return nil, fmt.Errorf("connect %s (%s): %w", srv.name, srv.addr, err)
	}
	if release != nil {
		// httpmux closes the socket on every way out, failed dials too.
		tcp = &reservedConn{Conn: tcp, release: release}
	}
	return tcp, nil
}

// clientTLS is the TLS configuration of a connection to srv: verified as
// for QUIC backends (tls.server_name, else the server's address, against
// tls.ca; TLS 1.2 or later, which origins over TCP still serve), with the
// server's own ticket cache, as for QUIC (see early.go): a resumed
// handshake skips the certificate and its verification.
func (rt *Backend) clientTLS(srv *Server) *tls.Config {
	sni := rt.cfg.TLS.ServerName
	if sni == "" {
		sni = srv.addr.Addr().String()
	}
	return &tls.Config{ServerName: sni, RootCAs: rt.roots, MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: rt.cfg.TLS.InsecureSkipVerify, ClientSessionCache: srv.early.tickets}
}

// reservedConn is a dialled TCP connection that gives its reservation in
// the memory budget back when it is closed.
type reservedConn struct {
	net.Conn
	release func()
}

func (c *reservedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// NetConn is the socket under the wrapper, which has no buffers of its
// own: httpmux's HTTP/1.1 client looks through it for the socket's
// readability (an idle connection its server closed).
func (c *reservedConn) NetConn() net.Conn { return c.Conn }

// Conn is a pooled backend connection: a quicmux.Conn and, for h3
// backends, the HTTP/3 client session that sends the requests of the leases
// on it (reuse.Worker.AttachConn leases its stream credit; the client opens
// each request's stream); or, for HTTP backends over TCP, an httpmux.Conn,
// which sends them itself.
type Conn struct {
	mux.Conn
	quic *quicmux.Conn
	h3   *h3.Client
	http *httpmux.Conn
	// early is the server, when the backend sends early data (see
	// Server.roundTrip).
	early *Server
	// probing: Suspect is pinging the connection.
	probing atomic.Bool
}

var _ mux.Conn = (*Conn)(nil)
