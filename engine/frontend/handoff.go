package frontend

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
)

// Handing connections to fresh goroutines.
//
// net/http serves an HTTP/2 connection from the goroutine that accepted
// it: for h2c with prior knowledge, under its HTTP/1.1 reader and writer
// (4 KiB each, kept while the connection lasts); over TLS, on the stack the
// handshake grew (16 KiB and more): an idle h2c connection cost 42 KB and
// an h2 one 51 (the engine's BenchmarkIdleConnMemory), 34 and 43-45 KB
// served as below. Here each HTTP/2
// connection is served by net/http's own HTTP/2 server (the handlers it
// puts in Server.TLSNextProto) from a goroutine of its own, started once
// the goroutine that accepted it has let go of it, so that those buffers
// and that stack are freed. An https frontend runs its TLS handshakes
// itself, one goroutine each under timeouts.header as net/http would,
// then hands h2 connections to the HTTP/2 server and HTTP/1.1 ones to the
// http.Server through resumeListener as if they came back from parking,
// so that HTTPS HTTP/1.1 connections are parked while idle too (park.go).
// HTTP/2 connections are not parked: the HTTP/2 server's state (HPACK
// tables, flow-control windows, settings) lives in its goroutines and
// cannot be taken out.

// handOff is a connection handed from the goroutine net/http accepted it
// on to one of the frontend's (clientConn.handed).
type handOff struct {
	// released is closed once net/http has let go of the connection:
	// its Close (suppressed) and its StateClosed hook are past.
	released chan struct{}
}

// baseContexter is how net/http passes a connection's base context to its
// HTTP/2 server through TLSNextProto's handler.
type baseContexter interface{ BaseContext() context.Context }

// h2Handler is the handler given to the HTTP/2 server for a handed-off
// connection: the frontend's, with the connection's base context.
type h2Handler struct {
	http.Handler
	ctx context.Context
}

func (h h2Handler) BaseContext() context.Context { return h.ctx }

var _ baseContexter = h2Handler{}

// failListener fails at once; setupHTTP2 serves it.
type failListener struct{ addr net.Addr }

var errSetupOnly = errors.New("frontend: listener for net/http's HTTP/2 setup only")

func (failListener) Accept() (net.Conn, error) { return nil, errSetupOnly }
func (failListener) Close() error              { return nil }
func (l failListener) Addr() net.Addr          { return l.addr }

// setupHTTP2 makes net/http install its HTTP/2 server in fe.hs.TLSNextProto
// (it does so when it starts serving: here on a listener that fails at
// once, as golang.org/x/net/http2 does for the same reason), keeps its
// handlers and puts handOffH2C in place of the h2c one.
func (fe *Frontend) setupHTTP2() error {
	if err := fe.hs.Serve(failListener{addr: fe.ln.Addr()}); !errors.Is(err, errSetupOnly) {
		return err
	}
	fe.h2, fe.h2c = fe.hs.TLSNextProto["h2"], fe.hs.TLSNextProto["unencrypted_http2"]
	if fe.h2 == nil || fe.h2c == nil {
		return errors.New("frontend: net/http installed no HTTP/2 server")
	}
	fe.hs.TLSNextProto["unencrypted_http2"] = fe.handOffH2C
	return nil
}

// handOffH2C is the http.Server's h2c entry (TLSNextProto): it returns at
// once, after starting the goroutine that serves the connection once net/http
// has let go of it (parking, in ConnState).
func (fe *Frontend) handOffH2C(hs *http.Server, tc *tls.Conn, h http.Handler) {
	var c *clientConn
	if u, ok := tc.NetConn().(interface{ UnencryptedNetConn() net.Conn }); ok {
		c = clientOf(u.UnencryptedNetConn())
	}
	bc, ok := h.(baseContexter)
	// Not ours, or a drain began (Shutdown may be past waiting for the
	// frontend's goroutines): served in place, as net/http would.
	if c == nil || !ok || fe.draining.Load() {
		fe.h2c(hs, tc, h)
		return
	}
	// net/http cancels this context when its goroutine returns.
	h = h2Handler{Handler: h, ctx: context.WithoutCancel(bc.BaseContext())}
	c.handed = &handOff{released: make(chan struct{})}
	c.state.Store(connHanding)
	fe.h2conns.Store(c, struct{}{})
	fe.handoffs.Go(func() {
		<-c.handed.released
		fe.h2c(hs, tc, h)
		fe.h2Done(c)
	})
}

// h2Done ends an HTTP/2 connection the HTTP/2 server is done with.
func (fe *Frontend) h2Done(c *clientConn) {
	c.Conn.Close()
	fe.h2conns.Delete(c)
	fe.connGone(c)
}

// acceptTLS is an https frontend's accept loop; each handshake runs in a
// goroutine of its own.
func (fe *Frontend) acceptTLS(ln net.Listener, conf *tls.Config) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				fe.env.Log.Warn("accept", "frontend", fe.cfg.Name, "err", err)
			}
			return
		}
		tc := tls.Server(&deepWriter{Conn: c}, conf)
		fe.handoffs.Go(func() { fe.handshake(tc) })
	}
}

// handshake runs tc's handshake under timeouts.header (net/http's bound,
// ReadHeaderTimeout) and hands the connection on by its ALPN protocol
// (RFC 7301): h2 to the HTTP/2 server from a goroutine of its own,
// anything else to the http.Server, as a connection back from parking.
func (fe *Frontend) handshake(tc *tls.Conn) {
	growStack()
	ctx := fe.cutCtx
	if d := fe.cfg.Timeouts.Header.D(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		// A client speaking plain HTTP gets net/http's answer.
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		fe.env.Log.Debug("tls handshake", "frontend", fe.cfg.Name, "client", tc.RemoteAddr(), "err", err)
		tc.Close()
		fe.countHandshake(tc)
		fe.leave()
		fe.env.TCP.release(fe.env.TCP.Conn) // limitListener's reservation
		return
	}
	c := &clientConn{Conn: tc, fe: fe, tls: true}
	c.reserved.Store(fe.env.TCP.Conn) // limitListener reserved it
	s := fe.track(c)
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		if dw, ok := tc.NetConn().(*deepWriter); ok {
			dw.grow.Store(true)
		}
		ctx := context.WithValue(context.Background(), http.ServerContextKey, fe.hs)
		ctx = context.WithValue(context.WithValue(ctx, connKey{}, c.served()), sessionKey{}, s)
		fe.h2conns.Store(c, struct{}{})
		// A goroutine of its own: this one's stack grew in the handshake.
		fe.handoffs.Go(func() {
			fe.h2(fe.hs, tc, h2Handler{Handler: fe.hs.Handler, ctx: ctx})
			fe.h2Done(c)
		})
		return
	}
	c.stop = func() {}
	c.state.Store(connResuming)
	if !fe.resume.push(c) {
		c.Conn.Close()
		fe.connGone(c)
	}
}

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP/1.x request (net/http's test).
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// track counts c, served outside the http.Server's accept loop, as a client
// connection of the frontend with a new session (what ConnContext and the
// StateNew hook do for the connections the server accepts).
func (fe *Frontend) track(c *clientConn) *session {
	wl, wr := workerAddrs(c)
	s := fe.newSession(wl, wr, c.RemoteAddr(), true)
	c.sess.Store(s)
	fe.env.Counters.ClientConns.WithLabelValues(fe.cfg.Name).Inc()
	return s
}

// waitHandoffs waits for the handshakes and HTTP/2 connections of the
// frontend's own goroutines, which a Shutdown has asked to end (HTTP/2
// GOAWAY); when ctx ends, it closes them.
func (fe *Frontend) waitHandoffs(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		fe.handoffs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	fe.cut()
	fe.h2conns.Range(func(k, _ any) bool {
		k.(*clientConn).Conn.Close()
		return true
	})
	<-done
}
