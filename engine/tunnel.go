package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// serveTunnel carries one client TCP connection as one raw QUIC stream to a
// server of the frontend's backend. Only opening the stream is retried:
// once bytes flowed, a failure ends the tunnel (TCP has no replay).
func (fe *frontendRT) serveTunnel(c net.Conn, worker int) {
	e := fe.eng
	defer c.Close()
	rt, unlock := fe.lockBackend()
	defer unlock()
	cfg := rt.cfg

	var key []byte
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		key = ap.Addr().AsSlice()
	}
	excluded := make([]bool, len(rt.servers))
	var (
		l   *lease
		str *quic.Stream
		srv *server
		err error
	)
	for attempt := 0; attempt <= *cfg.Retries && str == nil; attempt++ {
		if attempt > 0 {
			e.metrics.retries.WithLabelValues(cfg.Name).Inc()
		}
		si, ok := rt.bal.pick(key, func(i int) bool { return rt.usable(i) && !excluded[i] })
		if !ok {
			clear(excluded)
			if si, ok = rt.bal.pick(key, rt.usable); !ok {
				err = ErrNoServer
				break
			}
		}
		if attempt > 0 && *cfg.Redisp {
			e.metrics.redispatches.WithLabelValues(cfg.Name).Inc()
		}
		srv = rt.servers[si]
		ctx, cancel := context.WithTimeout(context.Background(), max(cfg.Timeouts.Connect.D(), time.Millisecond))
		l, err = rt.pools[worker][si].acquire(ctx, true)
		if err == nil {
			str, err = l.c.qc.OpenStreamSync(ctx)
			if err != nil {
				l.release(false, context.Cause(l.c.qc.Context()) != nil)
			}
		}
		cancel()
		if err != nil {
			if !errors.Is(err, ErrPoolFull) {
				rt.markDown(srv, err)
			}
			if *cfg.Redisp {
				excluded[si] = true
			}
		}
	}
	if str == nil {
		e.metrics.tunnels.WithLabelValues(fe.cfg.Name, "failed").Inc()
		e.log.Debug("tunnel failed", "frontend", fe.cfg.Name, "err", err)
		return
	}
	srv.inflight.Add(1)
	defer srv.inflight.Add(-1)
	e.metrics.backendRequests.WithLabelValues(cfg.Name, srv.name).Inc()

	broken := splice(c, str, fe.cfg.Timeouts.Idle.D(), fe.drainCh)
	l.release(!broken, false)
	result := "ok"
	if broken {
		result = "reset"
	}
	e.metrics.tunnels.WithLabelValues(fe.cfg.Name, result).Inc()
}

// splice copies both ways until both directions end, half-closing each side
// as its source ends. It returns true if either direction failed. An idle
// timeout (no byte either way) ends the tunnel.
func splice(c net.Conn, str *quic.Stream, idle time.Duration, drain <-chan struct{}) (broken bool) {
	var last atomic.Int64
	touch := func() { last.Store(time.Now().UnixNano()) }
	touch()
	var failed atomic.Bool
	var wg sync.WaitGroup
	done := make(chan struct{})

	wg.Go(func() { // client -> server
		if _, err := io.Copy(str, &touchReader{r: c, touch: touch}); err != nil {
			failed.Store(true)
			str.CancelWrite(0x1)
			return
		}
		str.Close() // FIN: the client is done sending
	})
	wg.Go(func() { // server -> client
		if _, err := io.Copy(c, &touchReader{r: str, touch: touch}); err != nil {
			failed.Store(true)
			str.CancelRead(0x1)
			c.Close()
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			c.Close()
		}
	})
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
			return failed.Load()
		case <-tick:
			if time.Since(time.Unix(0, last.Load())) < idle {
				continue
			}
		case <-drain:
			// Graceful drain waits for tunnels; a tunnel still open when
			// the drain deadline passes is cut here.
		}
		c.Close()
		str.CancelRead(0x2)
		str.CancelWrite(0x2)
		<-done
		return true
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
