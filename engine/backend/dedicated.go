package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/xdpnet/xdpnet/mux/httpmux"
)

// ErrNotHTTP1 is returned by DialDedicated for a backend whose protocol is
// not http1 or http1-tls.
var ErrNotHTTP1 = errors.New("backend protocol has no HTTP/1.1 upgrade")

// DialDedicated opens one HTTP/1.1 connection to server si on worker w
// outside the pool, for a request that takes its connection over: an
// HTTP/1.1 Upgrade (RFC 9110 section 7.8), after which the connection
// carries another protocol and can never serve a second request, so it
// must not come from the pool nor go back to it. Only http1 and http1-tls
// backends have one (HTTP/2 and HTTP/3 have no Upgrade: RFC 9113 section
// 8.6, RFC 9114 section 4.2); others get ErrNotHTTP1.
//
// The dial is a pooled one's: it waits out the server's backoff, runs
// under the connect timeout, reserves the socket's buffers in the memory
// budget (an error then wraps ErrBudget) and counts in the backend
// connection metrics; a failure the server caused backs it off. The
// caller owns the connection; its Close gives the reservation back.
func (rt *Backend) DialDedicated(ctx context.Context, w, si int) (net.Conn, error) {
	if rt.proto != httpmux.HTTP1 {
		return nil, fmt.Errorf("%s (%s): %w", rt.cfg.Name, rt.cfg.Protocol, ErrNotHTTP1)
	}
	srv := rt.servers[si]
	c, err := dialAccounted(ctx, rt, srv, func() (*dedicatedConn, error) { return rt.dialRaw(ctx, w, srv) })
	if err != nil {
		return nil, err
	}
	c.closed = rt.m.ConnsOpen.Dec
	return c, nil
}

// dialRaw opens a TCP connection to srv, over TLS (ALPN http/1.1) for
// http1-tls, with no HTTP client on it.
func (rt *Backend) dialRaw(ctx context.Context, w int, srv *Server) (*dedicatedConn, error) {
	if d := rt.cfg.Timeouts.Connect.D(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	sock, err := rt.dialSocket(ctx, w, srv)
	if err != nil {
		return nil, err
	}
	c := &dedicatedConn{Conn: sock, sock: sock}
	if rc, ok := sock.(*reservedConn); ok {
		c.sock = rc.Conn
	}
	if rt.tcpTLS {
		cfg := rt.clientTLS(srv)
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(sock, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			sock.Close()
			return nil, fmt.Errorf("connect %s (%s): tls: %w", srv.name, srv.addr, err)
		}
		if tc.ConnectionState().DidResume {
			srv.early.resumed.Inc()
		}
		c.Conn = tc
	}
	return c, nil
}

// dedicatedConn is a connection of DialDedicated: the TLS connection or
// the socket (with its reservation), and the socket itself, which
// CloseWrite half-closes.
type dedicatedConn struct {
	net.Conn
	sock   net.Conn
	once   sync.Once
	closed func() // once, at the first Close
}

func (c *dedicatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.closed != nil {
			c.closed()
		}
	})
	return err
}

// CloseWrite ends the sending side: TLS's close_notify (RFC 8446 section
// 6.1), then TCP's FIN, which servers wait for rather than for an alert.
func (c *dedicatedConn) CloseWrite() error {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
	}
	if cw, ok := c.sock.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
