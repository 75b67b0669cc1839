package engine

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/xdpnet/xdpnet/engine/admin"
	"github.com/xdpnet/xdpnet/engine/backend"
	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/frontend"
	"github.com/xdpnet/xdpnet/engine/netapi"
	"github.com/xdpnet/xdpnet/engine/stats"
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
	// fenv is what the frontends share: with the engine-wide connection
	// limit and the requests in flight, which a drain waits for.
	fenv *frontend.Env

	mu        sync.Mutex
	cfg       *config.Config
	backends  map[string]*backend.Backend
	frontends map[string]*frontend.Frontend // keyed by frontendKey
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
		backends:  map[string]*backend.Backend{},
		frontends: map[string]*frontend.Frontend{},
	}
	e.life, e.endLife = context.WithCancel(context.Background())
	e.reg = admin.NewRegistry(opts.Net.Name(), e.Stats)
	e.workers = max(1, opts.Net.Workers())
	e.fenv = &frontend.Env{Net: opts.Net, Workers: e.workers, Log: opts.Log, Counters: e.metrics, Latency: e.reg.Latency}
	if err := e.newPayloadPool(cfg); err != nil {
		return nil, err
	}
	e.cfg = cfg
	e.fenv.Conns.SetMax(cfg.MaxConnections)
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
	err := e.setAccessLogLocked(e.cfg)
	if err == nil {
		err = e.applyLocked(e.cfg)
	}
	if err != nil {
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
	if cfg.Dataplane != e.cfg.Dataplane || cfg.Admin != e.cfg.Admin || cfg.AdminPprof != e.cfg.AdminPprof ||
		!reflect.DeepEqual(cfg.Interfaces, e.cfg.Interfaces) || !reflect.DeepEqual(cfg.Buffers, e.cfg.Buffers) {
		return fmt.Errorf("%w: dataplane, admin, admin_pprof, interfaces and buffers change only with a restart", config.ErrInvalid)
	}
	if err := e.applyLocked(cfg); err != nil {
		return err
	}
	if err := e.setAccessLogLocked(cfg); err != nil {
		// The new routes and backends are in place: keep the old log
		// rather than refuse what is already applied.
		e.log.Error("access log not changed", "err", err)
	}
	e.cfg = cfg
	e.fenv.Conns.SetMax(cfg.MaxConnections)
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
	newBackends := map[string]*backend.Backend{}
	var created []*backend.Backend
	for _, b := range cfg.Backends {
		if old := e.backends[b.Name]; old != nil && reflect.DeepEqual(*old.Config(), b) {
			// A reload is also the operator's "try again now": servers
			// backing off after failed dials are dialled at once.
			old.ClearBackoff()
			newBackends[b.Name] = old
			continue
		}
		rt, err := backend.New(b, backend.Env{
			Net: e.net, Workers: e.workers, Log: e.log, RootCAs: e.opts.BackendRootCAs, Counters: e.metrics,
			TCP: &e.fenv.TCP, QUIC: &e.fenv.QUIC, QUICWindows: e.fenv.QUIC.Windows,
		})
		if err != nil {
			for _, c := range created {
				c.Close()
			}
			return err
		}
		created = append(created, rt)
		newBackends[b.Name] = rt
	}
	// Frontends: keep sockets whose protocol and address are unchanged.
	// One whose protocol changes on the same address (http to https)
	// must have the old frontend's socket closed before it can bind:
	// those start last, once every other new socket is bound.
	newFrontends := map[string]*frontend.Frontend{}
	var opened, stopped []*frontend.Frontend
	var inPlace []config.Frontend
	start := func(f config.Frontend) error {
		fe := frontend.New(f, newBackends, e.fenv)
		if err := fe.Start(); err != nil {
			for _, o := range opened {
				o.Shutdown(context.Background())
			}
			for _, c := range created {
				c.Close()
			}
			e.relisten(stopped)
			return fmt.Errorf("frontend %s: %w", f.Name, err)
		}
		opened = append(opened, fe)
		newFrontends[frontendKey(&f)] = fe
		return nil
	}
	for _, f := range cfg.Frontends {
		k := frontendKey(&f)
		if old := e.frontends[k]; old != nil {
			if old.Config().Protocol == f.Protocol {
				newFrontends[k] = old
			} else {
				inPlace = append(inPlace, f)
			}
			continue
		}
		if err := start(f); err != nil {
			return err
		}
	}
	for _, f := range inPlace {
		old := e.frontends[frontendKey(&f)]
		old.StopListening()
		stopped = append(stopped, old)
		if err := start(f); err != nil {
			return err
		}
	}
	// Commit: switch kept frontends to the new backends.
	for _, rt := range created {
		rt.Start()
	}
	for k, fe := range newFrontends {
		if e.frontends[k] == fe {
			for _, f := range cfg.Frontends {
				if frontendKey(&f) == k {
					if !reflect.DeepEqual(f.WithoutReloadable(), fe.Config().WithoutReloadable()) {
						e.log.Warn("frontend settings other than its backend, routes, certificates and Alt-Svc change only with a restart", "frontend", f.Name)
					}
					fe.SwapRoutes(&f, newBackends)
					fe.Reconfigure(&f)
				}
			}
		}
	}
	// What the reload removed drains in the background, until the
	// engine closes at the latest (closeRest waits for it).
	for k, fe := range e.frontends {
		if newFrontends[k] != fe {
			e.retiring.Go(func() { fe.Shutdown(e.life) })
		}
	}
	for name, rt := range e.backends {
		if newBackends[name] != rt {
			e.retiring.Go(func() { rt.Retire(e.life) })
		}
	}
	e.frontends, e.backends = newFrontends, newBackends
	return nil
}

// relisten puts back, after a refused reload, the sockets of frontends
// whose listening socket the reload had closed (StopListening): each is
// replaced by a frontend of its configuration on a new socket, and the old
// one drains what it accepted.
func (e *Engine) relisten(stopped []*frontend.Frontend) {
	for _, old := range stopped {
		f := *old.Config()
		fe := frontend.New(f, e.backends, e.fenv)
		if err := fe.Start(); err != nil {
			e.log.Error("frontend lost in a refused reload", "frontend", f.Name, "err", err)
			continue
		}
		e.frontends[frontendKey(&f)] = fe
		e.retiring.Go(func() { old.Shutdown(e.life) })
	}
}

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
	// The frontends cut what is left when fctx ends: at ctx's deadline,
	// once the requests still in flight are counted. Counted after the
	// frontends' own cut, they would be gone already (their connections
	// closed under them); and a drain that finished as the deadline
	// passed cut nothing and is no failure. Open tunnels and WebSockets
	// cut make it one too (xdpnet_tunnels_total counts them).
	fctx, fcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer fcancel()
	type cutCount struct{ requests, tunnels int64 }
	cut := make(chan cutCount, 1)
	stop := context.AfterFunc(ctx, func() {
		cut <- cutCount{e.fenv.InflightN.Load(), e.fenv.TunnelsN.Load()}
		fcancel()
	})
	defer stop()
	var wg sync.WaitGroup
	for _, fe := range fes {
		wg.Go(func() { fe.Shutdown(fctx) })
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { e.fenv.Inflight.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-fctx.Done():
	}
	if stop() {
		fcancel()
	} else if n := <-cut; n.requests > 0 || n.tunnels > 0 {
		e.metrics.DrainCut.Add(n.requests)
		e.log.Warn("drain deadline passed; cut what was in flight", "requests", n.requests, "tunnels", n.tunnels)
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
		fe.Shutdown(ctx)
	}
	e.closeRest()
	return nil
}

func (e *Engine) closeRest() {
	e.endLife()
	e.retiring.Wait()
	e.mu.Lock()
	bes := e.backends
	e.backends = map[string]*backend.Backend{}
	e.frontends = map[string]*frontend.Frontend{}
	admin := e.admin
	e.admin = nil
	e.mu.Unlock()
	if l := e.fenv.AccessLog.Swap(nil); l != nil {
		l.Close()
	}
	e.fenv.Payload.Close() // wakes requests still waiting for a buffer
	for _, rt := range bes {
		rt.Close()
	}
	if admin != nil {
		admin.Close()
	}
}

// FrontendAddr is the bound address of the named frontend (useful with port
// 0), or nil.
func (e *Engine) FrontendAddr(name string) net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, fe := range e.frontends {
		if fe.Config().Name == name {
			return fe.Addr()
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

// startAdminLocked serves the admin endpoint (package admin) on a kernel
// socket.
func (e *Engine) startAdminLocked() error {
	if e.cfg.Admin == "off" {
		return nil
	}
	srv, addr, err := admin.Serve(e.cfg.Admin, admin.Handler(e.reg, e.Stats, e.cfg.AdminPprof), e.log)
	if err != nil {
		return err
	}
	e.admin, e.adminAddr = srv, addr
	return nil
}
