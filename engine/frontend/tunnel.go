package frontend

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/engine/backend"
	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/reuse"
)

// serveTunnel carries one client TCP connection as one raw QUIC stream to a
// server of the frontend's backend. Only opening the stream is retried:
// once bytes flowed, a failure ends the tunnel (TCP has no replay).
func (fe *Frontend) serveTunnel(c net.Conn, worker int) {
	e := fe.env
	defer c.Close()
	// A tcp frontend has no routes: its backend is the default route.
	rte := fe.acquireRoute("", "")
	rt := rte.be
	defer rt.Release()
	cfg := rt.Config()

	var key []byte
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		key = ap.Addr().AsSlice()
	}
	sess := &session{worker: worker}
	defer sess.close()
	excluded := make([]bool, rt.NumServers())
	var (
		l   reuse.Lease
		srv *backend.Server
		err error
	)
	for attempt := 0; attempt <= rte.retries && !l.Valid(); attempt++ {
		si, ok := rt.Pick(attempt, key, excluded)
		if !ok {
			err = backend.ErrNoServer
			break
		}
		srv = rt.Server(si)
		ctx, cancel := context.WithTimeout(backend.WithWorker(fe.cutCtx, worker), max(cfg.Timeouts.Connect.D(), time.Millisecond))
		l, err = rt.Attach(ctx, worker, si, sess.reuseSession(rt), false)
		cancel()
		if err != nil {
			if errors.Is(err, backend.ErrBudget) {
				break // another server's dial would wait for the same room
			}
			rt.ConnectFailed(srv, err)
			if *cfg.Redisp {
				excluded[si] = true
			}
		}
	}
	if !l.Valid() {
		f := backend.Classify(err)
		e.Counters.Tunnels.WithLabelValues(fe.cfg.Name, "failed").Inc()
		e.Counters.Failures.WithLabelValues(cfg.Name, f.Reason).Inc()
		e.Log.Info("tunnel refused", "frontend", fe.cfg.Name, "backend", cfg.Name, "reason", f.Reason, "err", err)
		return
	}
	srv.AddInflight(1)
	defer srv.AddInflight(-1)
	srv.CountRequest()

	if cfg.SendProxyProtocol == "v2" {
		if err := sendProxyHeader(l.Stream(), c); err != nil {
			l.Done(err)
			e.Counters.Tunnels.WithLabelValues(fe.cfg.Name, "reset").Inc()
			return
		}
	}
	err = splice(c, l.Stream(), fe.cfg.Timeouts.Idle.D(), fe.cutCtx.Done())
	l.Done(err)
	e.Counters.Tunnels.WithLabelValues(fe.cfg.Name, tunnelResult(err)).Inc()
}

// tunnelResult is the xdpnet_tunnels_total result of a tunnel splice
// ended with err.
func tunnelResult(err error) string {
	switch {
	case errors.Is(err, errTunnelIdle):
		return "idle"
	case errors.Is(err, errTunnelCut):
		return "cut"
	case err != nil:
		return "reset"
	}
	return "ok"
}

// errTunnelIdle ends a tunnel that carried no byte for the idle timeout.
var errTunnelIdle = errors.New("tunnel idle timeout")

// errTunnelCut ends a tunnel still open when a drain's deadline passed.
var errTunnelCut = errors.New("tunnel cut by drain deadline")

// splice copies both ways until both directions end, half-closing each side
// as its source ends (TCP FIN <-> QUIC FIN). It returns the first failure,
// or nil.
//
// A failure in either direction, the idle timeout (no byte either way, so
// also a peer that stopped reading: the other side's writes block and
// nothing moves) or the drain deadline aborts both sides at once: the
// stream is reset (the server learns the tunnel was cut, never a clean
// end of a truncated transfer) and the client connection closed. Both are
// safe while the copying goroutines are blocked in Read or Write on them,
// which Close of a QUIC stream is not; the two copies never close what the
// other is using. splice returns only once both copies ended.
func splice(c net.Conn, str mux.Stream, idle time.Duration, drain <-chan struct{}) error {
	var last atomic.Int64
	touch := func() { last.Store(time.Now().UnixNano()) }
	touch()
	var (
		mu    sync.Mutex
		first error
	)
	var abortOnce sync.Once
	abort := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
		abortOnce.Do(func() {
			str.Reset()
			c.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() { // client -> server
		if _, err := io.Copy(str, &touchReader{r: c, touch: touch}); err != nil {
			abort(err)
			return
		}
		str.CloseWrite() // FIN: the client is done sending
	})
	wg.Go(func() { // server -> client
		if _, err := io.Copy(c, &touchReader{r: str, touch: touch}); err != nil {
			abort(err)
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			c.Close()
		}
	})
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var tick <-chan time.Time
	if idle > 0 {
		t := time.NewTicker(max(idle/4, 10*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-done:
			return first
		case <-tick:
			if time.Since(time.Unix(0, last.Load())) < idle {
				continue
			}
			abort(errTunnelIdle)
		case <-drain:
			abort(errTunnelCut)
		}
		<-done
		return first
	}
}

type touchReader struct {
	r     io.Reader
	touch func()
}

func (t *touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.touch()
	}
	return n, err
}
