package backend

import (
	"context"
	"net/http"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/reuse"
)

// Config is the backend's configuration; callers must not change it.
func (rt *Backend) Config() *config.Backend { return &rt.cfg }

// NumServers is the number of servers; Server(i) is server i, as the
// balancer (Pick) numbers them.
func (rt *Backend) NumServers() int { return len(rt.servers) }

// Server is server i (0 <= i < NumServers).
func (rt *Backend) Server(i int) *Server { return rt.servers[i] }

// NewSession starts a client session on worker w's shard of the pool (see
// reuse.Session).
func (rt *Backend) NewSession(w int) *reuse.Session { return rt.pool.Worker(w).NewSession() }

// Retry replaces lease l on worker w, whose reused connection died with
// err, by one on a freshly dialled connection to the same server (see
// reuse.Worker.Retry).
func (rt *Backend) Retry(ctx context.Context, w int, l reuse.Lease, err error) (reuse.Lease, error) {
	return rt.pool.Worker(w).Retry(ctx, l, err)
}

// PoolStats are the statistics of the backend's pool.
func (rt *Backend) PoolStats() reuse.Stats { return rt.pool.Stats() }

// ClearBackoff lets every server be dialled again at once (a reload is the
// operator's "try again now").
func (rt *Backend) ClearBackoff() {
	for _, srv := range rt.servers {
		srv.dialOK()
	}
}

// UsedStreams is the number of streams in use on the backend's live
// connections: 0 once its requests are over.
func (rt *Backend) UsedStreams() int {
	rt.trMu.Lock()
	defer rt.trMu.Unlock()
	n := 0
	for _, live := range rt.live {
		for c := range live {
			n += c.UsedStreams()
		}
	}
	return n
}

// Use counts one request or tunnel using the backend until its Release, and
// reports whether a reload is retiring the backend (the caller then takes
// its successor if there is one: see Retire).
func (rt *Backend) Use() (retiring bool) {
	rt.users.Add(1)
	return rt.retiring.Load()
}

// Release ends one Use.
func (rt *Backend) Release() {
	if rt.users.Add(-1) == 0 && rt.retiring.Load() {
		rt.idleOnce.Do(func() { close(rt.idle) })
	}
}

// Retire waits until no request uses rt any more, or ctx ends (the
// engine is closing), then closes it.
func (rt *Backend) Retire(ctx context.Context) {
	rt.retiring.Store(true)
	if rt.users.Load() == 0 {
		rt.idleOnce.Do(func() { close(rt.idle) })
	}
	select {
	case <-rt.idle:
	case <-ctx.Done():
	}
	rt.Close()
	rt.log.Info("backend retired after reload")
}

// Name is the server's name.
func (srv *Server) Name() string { return srv.name }

// Host is the server's address as a URL host.
func (srv *Server) Host() string { return srv.host }

// Up reports whether the server is in (health checks have not taken it
// out).
func (srv *Server) Up() bool { return srv.up.Load() }

// AddInflight adds n to the server's requests and tunnels in flight (read by
// leastconn).
func (srv *Server) AddInflight(n int64) { srv.inflight.Add(n) }

// CountRequest counts a request or tunnel that reached the server.
func (srv *Server) CountRequest() { srv.requests.Inc() }

// RoundTrip sends req on the connection: its HTTP/2 or HTTP/1.1 client
// (backends over TCP), or its HTTP/3 client session (h3 backends), in
// 0-RTT data where the backend allows it (see Server.roundTrip).
func (c *Conn) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.http != nil {
		return c.http.RoundTrip(req)
	}
	if c.early == nil {
		return c.h3.RoundTrip(req)
	}
	return c.early.roundTrip(c, req)
}
