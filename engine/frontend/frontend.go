package frontend

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/engine/backend"
	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/netapi"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// Frontend is a listening frontend.
type Frontend struct {
	cfg config.Frontend
	env *Env
	// latency is its xdpnet_request_duration_seconds series.
	latency prometheus.Observer

	// routes are swapped by reloads; a request's use of its route's
	// backend is counted (acquireRoute) so that one a reload retired
	// closes once unused.
	routes atomic.Pointer[routeTable]

	// conns counts this frontend's client connections against its
	// max_connections; each also holds a slot of the engine's.
	conns       ConnLimit
	quicRefused recentRefusals // h3

	// certs are the https and h3 frontends' certificates, and altSvc the
	// Alt-Svc value of http and https ones (config.Frontend.AltSvcHeader,
	// "" for none): a reload replaces both (Reconfigure).
	certs  certStore
	altSvc atomic.Pointer[string]

	ln  net.Listener
	pc  net.PacketConn
	qtr *quic.Transport     // h3: the frontend's QUIC transport on pc
	qln *quic.EarlyListener // h3: its listener
	// quicStop ends, at Shutdown, a new QUIC connection's wait for its
	// reservation (quicConnContext): quic-go's listener closes only once
	// that wait returns.
	quicStop    context.Context
	quicStopped context.CancelFunc
	hs          *http.Server
	h3          *http3.Server
	// resume serves parked client connections again, parked lists them
	// while parked; draining stops parking (park.go).
	resume   *resumeListener
	parked   *parkedList
	draining atomic.Bool
	// h2 and h2c are net/http's HTTP/2 server (TLSNextProto's
	// handlers); handoffs joins the https frontend's handshakes and the
	// HTTP/2 connections served from goroutines of their own, h2conns
	// (handoff.go).
	h2, h2c  func(*http.Server, *tls.Conn, http.Handler)
	h2conns  sync.Map // *clientConn -> struct{}
	handoffs sync.WaitGroup
	tunnels  sync.WaitGroup
	// upgrades joins the WebSocket connections of http and https
	// frontends (upgrade.go), which the http.Server no longer tracks.
	upgrades sync.WaitGroup
	// serving joins the serve or accept loop, which ends with the listener.
	serving sync.WaitGroup
	// cutCtx ends when the drain deadline passes (cut): tunnels still
	// open or still connecting end with it.
	cutCtx context.Context
	cut    context.CancelFunc
	once   sync.Once
}

// New makes the frontend of cfg (validated), its routes and default
// backend resolved in backends until a reload swaps them (SwapRoutes).
// Start opens its socket.
func New(cfg config.Frontend, backends map[string]*backend.Backend, env *Env) *Frontend {
	fe := &Frontend{cfg: cfg, env: env, latency: env.Latency.WithLabelValues(cfg.Name)}
	fe.cutCtx, fe.cut = context.WithCancel(context.Background())
	fe.routes.Store(newRouteTable(&cfg, backends))
	fe.conns.max.Store(int64(cfg.MaxConnections))
	fe.Reconfigure(&cfg)
	return fe
}

// Reconfigure applies what a reload changes on a running frontend: its
// certificates (new handshakes use them; established connections keep
// theirs) and its Alt-Svc. An h3 frontend whose reload lists no
// certificate keeps the one it has.
func (fe *Frontend) Reconfigure(cfg *config.Frontend) {
	if certs := cfg.TLS.Loaded(); len(certs) > 0 {
		fe.certs.store(certs)
	}
	v := cfg.AltSvcHeader()
	fe.altSvc.Store(&v)
}

// advertise sets the frontend's Alt-Svc (RFC 7838) in h, replacing an
// origin's, which names the origin's alternatives and not this gateway's.
func (fe *Frontend) advertise(h http.Header) {
	if v := *fe.altSvc.Load(); v != "" {
		h.Set("Alt-Svc", v)
	}
}

// Config is the frontend's configuration; callers must not change it.
func (fe *Frontend) Config() *config.Frontend { return &fe.cfg }

// Addr is the frontend's bound address, or nil before Start.
func (fe *Frontend) Addr() net.Addr {
	switch {
	case fe.ln != nil:
		return fe.ln.Addr()
	case fe.pc != nil:
		return fe.pc.LocalAddr()
	}
	return nil
}

// Start opens the frontend's socket and serves it.
func (fe *Frontend) Start() error {
	e := fe.env
	newSession := fe.newSession
	log := slog.NewLogLogger(e.Log.With("frontend", fe.cfg.Name).Handler(), slog.LevelDebug)
	switch fe.cfg.Protocol {
	case config.ProtoHTTP, config.ProtoHTTPS:
		ln, err := e.Net.ListenTCP(fe.cfg.Addr())
		if err != nil {
			return err
		}
		ln = fe.proxyListen(ln)
		fe.ln = ln
		https := fe.cfg.Protocol == config.ProtoHTTPS
		var protos http.Protocols
		protos.SetHTTP1(true)
		var tlsConf *tls.Config
		if https {
			// ALPN h2 and http/1.1 (RFC 9113 section 3.2); the
			// handshake runs in a goroutine of its own under
			// timeouts.header (handoff.go). Session tickets are on,
			// their keys rotated by crypto/tls.
			protos.SetHTTP2(true)
			tlsConf = &tls.Config{GetCertificate: fe.certs.getCertificate, MinVersion: tls.VersionTLS12,
				NextProtos: []string{"h2", "http/1.1"}}
		} else {
			protos.SetUnencryptedHTTP2(true)
		}
		conns := e.Counters.ClientConns.WithLabelValues(fe.cfg.Name)
		fe.hs = &http.Server{
			Handler:           &httpProxy{fe: fe},
			Protocols:         &protos,
			TLSConfig:         tlsConf,
			ReadHeaderTimeout: fe.cfg.Timeouts.Header.D(),
			IdleTimeout:       fe.cfg.Timeouts.Idle.D(),
			MaxHeaderBytes:    fe.cfg.MaxHeaderBytes,
			// The HTTP/2 server keeps a read buffer of the largest
			// frame received while the connection lasts (idle too).
			HTTP2:    &http.HTTP2Config{MaxReadFrameSize: fe.cfg.MaxFrameSize},
			ErrorLog: log,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				ctx = context.WithValue(ctx, connKey{}, c)
				// Every connection the server gets is a clientConn
				// (parkingListener, resumeListener, handoff.go).
				cc := clientOf(c)
				if cc == nil {
					return ctx
				}
				// A parked connection back, or an https one (handoff.go).
				if s := cc.sess.Load(); s != nil {
					return context.WithValue(ctx, sessionKey{}, s)
				}
				wl, wr := workerAddrs(c)
				s := newSession(wl, wr, c.RemoteAddr(), true)
				cc.sess.Store(s)
				return context.WithValue(ctx, sessionKey{}, s)
			},
			ConnState: func(c net.Conn, s http.ConnState) {
				switch s {
				case http.StateNew:
					if !resumed(c) {
						conns.Inc()
					}
				case http.StateClosed, http.StateHijacked:
					if parking(c) {
						return
					}
					fe.connGone(c)
				}
			},
		}
		// HTTP/2 connections are served from goroutines of their own;
		// HTTP/1.1 ones are parked while idle (handoff.go, park.go).
		if err := fe.setupHTTP2(); err != nil {
			ln.Close()
			return err
		}
		fe.resume = newResumeListener(ln.Addr())
		fe.parked = newParkedList(fe.cfg.Timeouts.Idle.D())
		fe.serving.Go(func() { fe.hs.Serve(fe.resume) })
		if https {
			fe.serving.Go(func() { fe.acceptTLS(limitListener{Listener: ln, fe: fe}, tlsConf) })
		} else {
			fe.serving.Go(func() { fe.hs.Serve(parkingListener{Listener: limitListener{Listener: ln, fe: fe}, fe: fe}) })
		}
	case config.ProtoH3:
		pc, err := e.Net.ListenUDP(fe.cfg.Addr())
		if err != nil {
			return err
		}
		if fe.cfg.TLS.Loaded() == nil {
			cert, err := fe.selfSigned()
			if err != nil {
				pc.Close()
				return err
			}
			fe.certs.store([]tls.Certificate{cert})
		}
		// Our own transport rather than http3.Server.Serve's, for its
		// ConnContext: the connection limit refuses a QUIC connection
		// there, before its handshake, with CONNECTION_REFUSED.
		fe.quicStop, fe.quicStopped = context.WithCancel(context.Background())
		tr := &quic.Transport{Conn: pc, ConnContext: fe.quicConnContext}
		win := e.QUIC.Windows
		qln, err := tr.ListenEarly(
			http3.ConfigureTLSConfig(&tls.Config{GetCertificate: fe.certs.getCertificate, MinVersion: tls.VersionTLS13}),
			&quic.Config{
				HandshakeIdleTimeout: fe.cfg.Timeouts.Header.D(),
				MaxIdleTimeout:       fe.cfg.Timeouts.Idle.D(),
				// PINGs keep a connection whose requests are silent
				// (a gRPC stream waiting for its next message) from
				// QUIC's idle timeout; one with no request in flight is
				// closed at the idle timeout by http3.Server.IdleTimeout,
				// which counts only HTTP/3 activity. A vanished client
				// acknowledges no PING and still times out.
				KeepAlivePeriod:   fe.cfg.Timeouts.Idle.D() / 2,
				InitialPacketSize: netapi.QUICPacketSize(e.Net, fe.cfg.Addr().Addr()),
				// What the connection may buffer of what it receives,
				// reserved in the memory budget (QUICBudget).
				InitialStreamReceiveWindow:     win.Stream,
				MaxStreamReceiveWindow:         win.StreamMax,
				InitialConnectionReceiveWindow: win.Conn,
				MaxConnectionReceiveWindow:     win.ConnMax,
			})
		if err != nil {
			fe.quicStopped()
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
				s := newSession(c.LocalAddr(), c.RemoteAddr(), c.RemoteAddr(), false)
				context.AfterFunc(c.Context(), s.close)
				return context.WithValue(ctx, sessionKey{}, s)
			},
		}
		fe.serving.Go(func() { fe.h3.ServeListener(qln) })
	case config.ProtoTCP:
		ln, err := e.Net.ListenTCP(fe.cfg.Addr())
		if err != nil {
			return err
		}
		ln = fe.proxyListen(ln)
		fe.ln = ln
		fe.serving.Go(fe.acceptTunnels)
	}
	e.Log.Info("frontend listening", "frontend", fe.cfg.Name, "protocol", fe.cfg.Protocol, "addr", fe.Addr(), "stack", e.Net.Name())
	return nil
}

// newSession is the session of a client connection: local and remote
// choose the worker; client is the client's address (a PROXY protocol
// header's, or remote).
func (fe *Frontend) newSession(local, remote, client net.Addr, tcp bool) *session {
	s := &session{worker: fe.env.pickWorker(local, remote, tcp)}
	if ap, err := netip.ParseAddrPort(client.String()); err == nil {
		s.remote = ap.Addr().Unmap()
	}
	return s
}

// selfSigned makes the certificate of an h3 frontend configured without one.
func (fe *Frontend) selfSigned() (tls.Certificate, error) {
	fe.env.Log.Warn("h3 frontend without tls.cert: using a self-signed certificate", "frontend", fe.cfg.Name)
	cert, _, err := quicmux.SelfSigned([]string{fe.cfg.Addr().Addr().String()}, 24*time.Hour)
	return cert, err
}

func (fe *Frontend) acceptTunnels() {
	e := fe.env
	conns := e.Counters.ClientConns.WithLabelValues(fe.cfg.Name)
	for {
		c, err := fe.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				e.Log.Warn("accept", "frontend", fe.cfg.Name, "err", err)
			}
			return
		}
		if !fe.admit() {
			// Over the limit: closed right after accept (see
			// limitListener).
			c.Close()
			continue
		}
		if !fe.admitBudget(c) {
			fe.leave()
			continue
		}
		conns.Inc()
		fe.tunnels.Go(func() {
			defer fe.leave()
			defer e.TCP.release(e.TCP.Conn)
			defer conns.Dec()
			e.TunnelsN.Add(1)
			defer e.TunnelsN.Add(-1)
			wl, wr := workerAddrs(c)
			fe.serveTunnel(c, e.pickWorker(wl, wr, true))
		})
	}
}

// StopListening closes the frontend's listening TCP socket (http, https
// and tcp frontends), so that a frontend of another protocol can bind its
// address: a reload that changes the protocol on one address. What it
// accepted is served on until Shutdown.
func (fe *Frontend) StopListening() {
	if fe.ln != nil {
		fe.ln.Close()
	}
}

// Shutdown stops accepting and waits for requests and tunnels in flight;
// when ctx ends it cuts what is left.
func (fe *Frontend) Shutdown(ctx context.Context) {
	fe.once.Do(func() {
		cut := fe.cut
		switch {
		case fe.hs != nil:
			if fe.cfg.Protocol == config.ProtoHTTPS {
				fe.ln.Close() // acceptTLS's; the server closes its own
			}
			fe.closeParked()
			if err := fe.hs.Shutdown(ctx); err != nil {
				fe.hs.Close()
			}
			fe.waitHandoffs(ctx)
			fe.waitOrCut(ctx, &fe.upgrades)
		case fe.h3 != nil:
			// The listener is ours (ServeListener): close it first so
			// that no handshake completes into a queue nobody accepts,
			// once a connection waiting for its reservation is refused.
			fe.quicStopped()
			fe.qln.Close()
			if err := fe.h3.Shutdown(ctx); err != nil {
				fe.h3.Close()
			}
			fe.qtr.Close()
			fe.pc.Close()
		case fe.ln != nil:
			fe.ln.Close()
			fe.waitOrCut(ctx, &fe.tunnels)
		}
		cut()
		fe.serving.Wait() // the serve and accept loops end with their listeners
	})
}

// waitOrCut waits for the tunnels wg joins; when ctx ends first, it cuts
// them (cutCtx) and waits for them to end.
func (fe *Frontend) waitOrCut(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		fe.cut()
		<-done
	}
}
