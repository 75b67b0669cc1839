package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/engine/admin"
	"github.com/xdpnet/xdpnet/engine/stats"

	"github.com/xdpnet/xdpnet/engine/netapi"

	"github.com/xdpnet/xdpnet/engine/config"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// Options are the engine's run-time dependencies.
type Options struct {
	// Net is the network stack; required.
	Net netapi.Net
	// Log receives structured logs; nil uses slog.Default().
	Log *slog.Logger
	// BackendRootCAs is trusted for backends whose tls.ca is unset (tests
	// and the demo pass their lab CA here); nil means the system roots.
	BackendRootCAs *x509.CertPool
}

// Engine is the gateway: frontends, workers and backend pools on one Net.
type Engine struct {
	opts    Options
	log     *slog.Logger
	net     netapi.Net
	metrics *stats.Counters
	reg     *admin.Registry
	workers int // one per dedicated queue (xdp) or per core (kernel)
	started time.Time

	// inflight counts HTTP requests in progress (drain waits for them);
	// inflightN is its count, for what a drain's deadline cuts.
	inflight  sync.WaitGroup
	inflightN atomic.Int64
	// conns counts client connections over all frontends against the
	// configured max_connections.
	conns connLimit

	mu        sync.Mutex
	cfg       *config.Config
	backends  map[string]*backendRT
	frontends map[string]*frontendRT // keyed by frontendKey
	admin     *http.Server
	adminAddr net.Addr
	closed    bool

	// life ends when the engine closes: frontends and backends a reload
	// removed stop draining then. retiring joins their goroutines.
	life     context.Context
	endLife  context.CancelFunc
	retiring sync.WaitGroup
}

// New builds an engine for cfg (already validated) on opts.Net. Start
// opens its sockets.
func New(cfg *config.Config, opts Options) (*Engine, error) {
	if opts.Net == nil {
		return nil, errors.New("engine: Options.Net is required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	e := &Engine{
		opts:      opts,
		log:       opts.Log,
		net:       opts.Net,
		metrics:   &stats.Counters{},
		backends:  map[string]*backendRT{},
		frontends: map[string]*frontendRT{},
	}
	e.life, e.endLife = context.WithCancel(context.Background())
	e.reg = admin.NewRegistry(opts.Net.Name(), e.Stats)
	e.workers = max(1, opts.Net.Workers())
	e.cfg = cfg
	e.conns.max.Store(int64(cfg.MaxConnections))
	return e, nil
}

// Start opens the admin endpoint and every frontend, and starts health
// checks. On error everything opened so far is closed.
func (e *Engine) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started = time.Now()
	if err := e.startAdminLocked(); err != nil {
		return err
	}
	if err := e.applyLocked(e.cfg); err != nil {
		e.mu.Unlock()
		e.Close()
		e.mu.Lock()
		return err
	}
	e.log.Info("engine started", "stack", e.net.Name(), "workers", e.workers,
		"frontends", len(e.frontends), "backends", len(e.backends))
	return nil
}

// Reload applies cfg without dropping established client connections:
// frontends whose protocol and listen address are unchanged keep their
// sockets and connections and switch to the new backends for new requests;
// changed backends get new pools and the old ones close once their requests
// finish; removed frontends drain.
func (e *Engine) Reload(cfg *config.Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return net.ErrClosed
	}
	if cfg.Dataplane != e.cfg.Dataplane || cfg.Admin != e.cfg.Admin ||
		!reflect.DeepEqual(cfg.Interfaces, e.cfg.Interfaces) || !reflect.DeepEqual(cfg.Buffers, e.cfg.Buffers) {
		return fmt.Errorf("%w: dataplane, admin, interfaces and buffers change only with a restart", config.ErrInvalid)
	}
	if err := e.applyLocked(cfg); err != nil {
		return err
	}
	e.cfg = cfg
	e.conns.max.Store(int64(cfg.MaxConnections))
	e.log.Info("configuration reloaded", "frontends", len(e.frontends), "backends", len(e.backends))
	return nil
}

func frontendKey(f *config.Frontend) string {
	t := "tcp"
	if f.Protocol == config.ProtoH3 {
		t = "udp"
	}
	return t + "/" + f.Addr().String()
}

// applyLocked makes the running state match cfg.
func (e *Engine) applyLocked(cfg *config.Config) error {
	// Backends: keep those whose configuration is unchanged.
	newBackends := map[string]*backendRT{}
	var created []*backendRT
	for _, b := range cfg.Backends {
		if old := e.backends[b.Name]; old != nil && reflect.DeepEqual(old.cfg, b) {
			// A reload is also the operator's "try again now": servers
			// backing off after failed dials are dialled at once.
			for _, srv := range old.servers {
				srv.dialOK()
			}
			newBackends[b.Name] = old
			continue
		}
		rt, err := newBackendRT(e, b)
		if err != nil {
			for _, c := range created {
				c.close()
			}
			return err
		}
		created = append(created, rt)
		newBackends[b.Name] = rt
	}
	// Frontends: keep sockets whose protocol and address are unchanged.
	newFrontends := map[string]*frontendRT{}
	var opened []*frontendRT
	for _, f := range cfg.Frontends {
		k := frontendKey(&f)
		if old := e.frontends[k]; old != nil && old.cfg.Protocol == f.Protocol {
			newFrontends[k] = old
			continue
		}
		fe := &frontendRT{cfg: f, eng: e, latency: e.reg.Latency.WithLabelValues(f.Name)}
		fe.cutCtx, fe.cut = context.WithCancel(context.Background())
		fe.backend.Store(newBackends[f.Backend])
		fe.conns.max.Store(int64(f.MaxConnections))
		if err := fe.start(); err != nil {
			for _, o := range opened {
				o.shutdown(context.Background())
			}
			for _, c := range created {
				c.close()
			}
			return fmt.Errorf("frontend %s: %w", f.Name, err)
		}
		opened = append(opened, fe)
		newFrontends[k] = fe
	}
	// Commit: switch kept frontends to the new backends.
	for _, rt := range created {
		rt.start()
	}
	for k, fe := range newFrontends {
		if e.frontends[k] == fe {
			for _, f := range cfg.Frontends {
				if frontendKey(&f) == k {
					if !reflect.DeepEqual(withoutBackend(f), withoutBackend(fe.cfg)) {
						e.log.Warn("frontend settings other than its backend change only with a restart", "frontend", f.Name)
					}
					fe.swapBackend(newBackends[f.Backend])
				}
			}
		}
	}
	// What the reload removed drains in the background, until the
	// engine closes at the latest (closeRest waits for it).
	for k, fe := range e.frontends {
		if newFrontends[k] != fe {
			e.retiring.Go(func() { fe.shutdown(e.life) })
		}
	}
	for name, rt := range e.backends {
		if newBackends[name] != rt {
			e.retiring.Go(func() { rt.retire(e.life) })
		}
	}
	e.frontends, e.backends = newFrontends, newBackends
	return nil
}

func withoutBackend(f config.Frontend) config.Frontend { f.Backend = ""; f.Name = ""; return f }

// Shutdown drains: listeners close at once, requests and tunnels in flight
// finish (until ctx ends, then they are cut), then backend connections
// close gracefully. No request that had reached the engine is lost.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	fes := e.frontends
	e.mu.Unlock()
	e.log.Info("draining", "frontends", len(fes))
	var wg sync.WaitGroup
	for _, fe := range fes {
		wg.Go(func() { fe.shutdown(ctx) })
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { e.inflight.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		n := e.inflightN.Load()
		e.metrics.DrainCut.Add(n)
		e.log.Warn("drain deadline passed; cutting requests in flight", "requests", n)
		err = fmt.Errorf("drain: %w", ctx.Err())
	}
	// Closing the backends ends what is left: requests still waiting on a
	// backend fail at once, so the caller can exit now.
	e.closeRest()
	return err
}

// Close stops everything at once.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	fes := e.frontends
	e.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, fe := range fes {
		fe.shutdown(ctx)
	}
	e.closeRest()
	return nil
}

func (e *Engine) closeRest() {
	e.endLife()
	e.retiring.Wait()
	e.mu.Lock()
	bes := e.backends
	e.backends = map[string]*backendRT{}
	e.frontends = map[string]*frontendRT{}
	admin := e.admin
	e.admin = nil
	e.mu.Unlock()
	for _, rt := range bes {
		rt.close()
	}
	if admin != nil {
		admin.Close()
	}
}

// pickWorker chooses the worker serving a client connection: for TCP on a
// stack that can tell (netapi.ConnWorker), the worker of the RX queue the
// connection arrived on, so that its packets and its requests stay on one
// worker's queue, buffers and backend pool; otherwise (QUIC clients, the
// kernel stack, a SYN the stack forgot) one chosen by a hash of the
// client's address, so that a client's connections share a worker's pool.
func (e *Engine) pickWorker(local, remote net.Addr, tcp bool) int {
	n := e.workers
	if n == 1 {
		return 0
	}
	if cw, ok := e.net.(netapi.ConnWorker); ok && tcp {
		la, lok := addrPort(local)
		ra, rok := addrPort(remote)
		if lok && rok {
			if w, ok := cw.WorkerFor(la, ra); ok && w >= 0 && w < n {
				e.metrics.WorkerPicks.WithLabelValues("rx_queue").Inc()
				return w
			}
		}
	}
	e.metrics.WorkerPicks.WithLabelValues("hash").Inc()
	return int(maphash.String(workerSeed, remote.String()) % uint64(n))
}

// addrPort converts a socket address to a netip.AddrPort.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort(), true
	case *net.UDPAddr:
		return a.AddrPort(), true
	case nil:
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

var workerSeed = maphash.MakeSeed()

// FrontendAddr is the bound address of the named frontend (useful with port
// 0), or nil.
func (e *Engine) FrontendAddr(name string) net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, fe := range e.frontends {
		if fe.cfg.Name == name {
			return fe.addr()
		}
	}
	return nil
}

// AdminAddr is the bound admin address, or nil when off.
func (e *Engine) AdminAddr() net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.adminAddr
}

// StackName says which network stack the data plane runs on.
func (e *Engine) StackName() string { return e.net.Name() }

// frontendRT is a listening frontend.
type frontendRT struct {
	cfg config.Frontend
	eng *Engine
	// latency is its xdpnet_request_duration_seconds series.
	latency prometheus.Observer

	// backend is swapped by reloads; backendMu makes a request's use of
	// a backend visible to retire (readers hold it shared).
	backend atomic.Pointer[backendRT]

	// conns counts this frontend's client connections against its
	// max_connections; each also holds a slot of the engine's.
	conns       connLimit
	quicRefused recentRefusals // h3

	ln  net.Listener
	pc  net.PacketConn
	qtr *quic.Transport     // h3: the frontend's QUIC transport on pc
	qln *quic.EarlyListener // h3: its listener
	hs  *http.Server
	h3  *http3.Server
	// sessions maps an http frontend's client connections to their
	// session, so that the session closes with the connection.
	sessions sync.Map // net.Conn -> *session
	tunnels  sync.WaitGroup
	// cutCtx ends when the drain deadline passes (cut): tunnels still
	// open or still connecting end with it.
	cutCtx context.Context
	cut    context.CancelFunc
	once   sync.Once
}

func (fe *frontendRT) addr() net.Addr {
	switch {
	case fe.ln != nil:
		return fe.ln.Addr()
	case fe.pc != nil:
		return fe.pc.LocalAddr()
	}
	return nil
}

// acquireBackend returns the current backend, counted in use until the
// caller calls its release. A backend a reload swapped out is skipped for
// its successor, so retirement only waits for work that started before.
func (fe *frontendRT) acquireBackend() *backendRT {
	for {
		rt := fe.backend.Load()
		rt.users.Add(1)
		if !rt.retiring.Load() || fe.backend.Load() == rt {
			return rt
		}
		rt.release()
	}
}

// release ends one use of rt (see acquireBackend).
func (rt *backendRT) release() {
	if rt.users.Add(-1) == 0 && rt.retiring.Load() {
		rt.idleOnce.Do(func() { close(rt.idle) })
	}
}

func (fe *frontendRT) swapBackend(rt *backendRT) { fe.backend.Store(rt) }

func (fe *frontendRT) start() error {
	e := fe.eng
	newSession := func(local, remote net.Addr, tcp bool) *session {
		s := &session{worker: e.pickWorker(local, remote, tcp)}
		if ap, err := netip.ParseAddrPort(remote.String()); err == nil {
			s.remote = ap.Addr().Unmap()
		}
		return s
	}
	log := slog.NewLogLogger(e.log.With("frontend", fe.cfg.Name).Handler(), slog.LevelDebug)
	switch fe.cfg.Protocol {
	case config.ProtoHTTP:
		ln, err := e.net.ListenTCP(fe.cfg.Addr())
		if err != nil {
			return err
		}
		fe.ln = ln
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetUnencryptedHTTP2(true)
		conns := e.metrics.ClientConns.WithLabelValues(fe.cfg.Name)
		fe.hs = &http.Server{
			Handler:           &httpProxy{fe: fe},
			Protocols:         &protos,
			ReadHeaderTimeout: fe.cfg.Timeouts.Header.D(),
			IdleTimeout:       fe.cfg.Timeouts.Idle.D(),
			MaxHeaderBytes:    fe.cfg.MaxHeaderBytes,
			ErrorLog:          log,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				s := newSession(c.LocalAddr(), c.RemoteAddr(), true)
				fe.sessions.Store(c, s)
				return context.WithValue(ctx, sessionKey{}, s)
			},
			ConnState: func(c net.Conn, s http.ConnState) {
				switch s {
				case http.StateNew:
					conns.Inc()
				case http.StateClosed, http.StateHijacked:
					conns.Dec()
					// Once per connection: the session was stored
					// by ConnContext, right after limitListener
					// admitted the connection.
					if v, ok := fe.sessions.LoadAndDelete(c); ok {
						v.(*session).close()
						fe.leave()
					}
				}
			},
		}
		go fe.hs.Serve(limitListener{Listener: ln, fe: fe})
	case config.ProtoH3:
		pc, err := e.net.ListenUDP(fe.cfg.Addr())
		if err != nil {
			return err
		}
		cert, err := fe.certificate()
		if err != nil {
			pc.Close()
			return err
		}
		// Our own transport rather than http3.Server.Serve's, for its
		// ConnContext: the connection limit refuses a QUIC connection
		// there, before its handshake, with CONNECTION_REFUSED.
		tr := &quic.Transport{Conn: pc, ConnContext: fe.quicConnContext}
		qln, err := tr.ListenEarly(
			http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}),
			&quic.Config{
				HandshakeIdleTimeout: fe.cfg.Timeouts.Header.D(),
				MaxIdleTimeout:       fe.cfg.Timeouts.Idle.D(),
				InitialPacketSize:    netapi.QUICPacketSize(e.net, fe.cfg.Addr().Addr()),
			})
		if err != nil {
			tr.Close()
			pc.Close()
			return err
		}
		fe.pc, fe.qtr, fe.qln = pc, tr, qln
		fe.h3 = &http3.Server{
			Handler:        &httpProxy{fe: fe},
			IdleTimeout:    fe.cfg.Timeouts.Idle.D(),
			MaxHeaderBytes: fe.cfg.MaxHeaderBytes,
			ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
				s := newSession(c.LocalAddr(), c.RemoteAddr(), false)
				context.AfterFunc(c.Context(), s.close)
				return context.WithValue(ctx, sessionKey{}, s)
			},
		}
		go fe.h3.ServeListener(qln)
	case config.ProtoTCP:
		ln, err := e.net.ListenTCP(fe.cfg.Addr())
		if err != nil {
			return err
		}
		fe.ln = ln
		go fe.acceptTunnels()
	}
	e.log.Info("frontend listening", "frontend", fe.cfg.Name, "protocol", fe.cfg.Protocol, "addr", fe.addr(), "stack", e.net.Name())
	return nil
}

// certificate loads the frontend's certificate or makes a self-signed one.
func (fe *frontendRT) certificate() (tls.Certificate, error) {
	if fe.cfg.TLS != nil && fe.cfg.TLS.Cert != "" {
		return tls.LoadX509KeyPair(fe.cfg.TLS.Cert, fe.cfg.TLS.Key)
	}
	fe.eng.log.Warn("h3 frontend without tls.cert: using a self-signed certificate", "frontend", fe.cfg.Name)
	cert, _, err := quicmux.SelfSigned([]string{fe.cfg.Addr().Addr().String()}, 24*time.Hour)
	return cert, err
}

func (fe *frontendRT) acceptTunnels() {
	e := fe.eng
	conns := e.metrics.ClientConns.WithLabelValues(fe.cfg.Name)
	for {
		c, err := fe.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				e.log.Warn("accept", "frontend", fe.cfg.Name, "err", err)
			}
			return
		}
		if !fe.admit() {
			// Over the limit: closed right after accept (see
			// limitListener).
			c.Close()
			continue
		}
		conns.Inc()
		fe.tunnels.Go(func() {
			defer fe.leave()
			defer conns.Dec()
			fe.serveTunnel(c, e.pickWorker(c.LocalAddr(), c.RemoteAddr(), true))
		})
	}
}

// shutdown stops accepting and waits for requests and tunnels in flight;
// when ctx ends it cuts what is left.
func (fe *frontendRT) shutdown(ctx context.Context) {
	fe.once.Do(func() {
		cut := fe.cut
		switch {
		case fe.hs != nil:
			if err := fe.hs.Shutdown(ctx); err != nil {
				fe.hs.Close()
			}
		case fe.h3 != nil:
			// The listener is ours (ServeListener): close it first so
			// that no handshake completes into a queue nobody accepts.
			fe.qln.Close()
			if err := fe.h3.Shutdown(ctx); err != nil {
				fe.h3.Close()
			}
			fe.qtr.Close()
			fe.pc.Close()
		case fe.ln != nil:
			fe.ln.Close()
			done := make(chan struct{})
			go func() { fe.tunnels.Wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				cut()
				<-done
				return
			}
		}
		cut()
	})
}

// retire waits until no request uses rt any more, or ctx ends (the
// engine is closing), then closes it.
func (rt *backendRT) retire(ctx context.Context) {
	rt.retiring.Store(true)
	if rt.users.Load() == 0 {
		rt.idleOnce.Do(func() { close(rt.idle) })
	}
	select {
	case <-rt.idle:
	case <-ctx.Done():
	}
	rt.close()
	rt.log.Info("backend retired after reload")
}

// startAdminLocked serves the admin endpoint (package admin) on a kernel
// socket.
func (e *Engine) startAdminLocked() error {
	if e.cfg.Admin == "off" {
		return nil
	}
	srv, addr, err := admin.Serve(e.cfg.Admin, admin.Handler(e.reg, e.Stats), e.log)
	if err != nil {
		return err
	}
	e.admin, e.adminAddr = srv, addr
	return nil
}
