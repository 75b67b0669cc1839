package backend

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/xdpnet/xdpnet/engine/stats"
	"github.com/xdpnet/xdpnet/mux/h3"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// Session resumption and 0-RTT to backends.
//
// Every dial to a server offers the newest session ticket that server
// issued (RFC 8446 section 4.6.1), from a cache of its own: the servers of
// a backend may share a TLS server name but not their ticket keys. A
// resumed handshake skips the certificate exchange and its verification.
// crypto/tls keys the cache by server name, which is one per server, so the
// cache holds one ticket.
//
// With the backend's early_data, a dial that holds a ticket returns before
// the handshake completes (quicmux.Transport.DialEarly), and GET and HEAD
// requests without a body go out in 0-RTT data at once; every other
// request waits for the handshake, as on any connection. Go's crypto/tls
// has no early data over TCP, so this is HTTP/3 only.

// ticketsPerServer bounds a server's ticket cache: one entry per server
// name (see above).
const ticketsPerServer = 1

// earlyHeader marks a request sent in early data (RFC 8470 section 5.1):
// the server learns that the request may be a replay and that the engine
// understands 425 Too Early.
const earlyHeader = "Early-Data"

// serverEarly is a server's ticket cache and its resumption and 0-RTT
// counters.
type serverEarly struct {
	tickets tls.ClientSessionCache
	sni     string // the tickets' key: the server name dials send
	resumed *stats.Counter
	// the results of xdpnet_backend_early_requests_total
	sent, accepted, rejected, tooEarly *stats.Counter
}

func newServerEarly(m *stats.Counters, backend, server, sni string) *serverEarly {
	r := func(result string) *stats.Counter { return m.EarlyRequests.WithLabelValues(backend, server, result) }
	return &serverEarly{
		tickets: newTicketCache(ticketsPerServer), sni: sni,
		resumed: m.Resumed.WithLabelValues(backend, server),
		sent:    r("sent"), accepted: r("accepted"), rejected: r("rejected"), tooEarly: r("too_early"),
	}
}

// noEarlyKey marks a dial context whose connection must not be early.
type noEarlyKey struct{}

// withoutEarly marks ctx's dial as one that completes the handshake before
// it returns: a health check measures the server, and an early connection
// whose 0-RTT the server rejects (after its restart) would fail the check.
func withoutEarly(ctx context.Context) context.Context {
	return context.WithValue(ctx, noEarlyKey{}, true)
}

// dialQUIC dials srv on tr with srv's session tickets: early (see
// quicmux.Transport.DialEarly) if the backend allows early data and ctx is
// not withoutEarly. It counts
// a resumed handshake once the handshake completed, and forgets the ticket
// of a server that rejected the early data, so that the next dial does not
// offer it again.
func (rt *Backend) dialQUIC(ctx context.Context, tr *quicmux.Transport, srv *Server, tlsConf *tls.Config) (*quicmux.Conn, error) {
	tlsConf.ClientSessionCache = srv.early.tickets
	addr := net.UDPAddrFromAddrPort(srv.addr)
	if noEarly, _ := ctx.Value(noEarlyKey{}).(bool); !rt.cfg.EarlyData || noEarly {
		qc, err := tr.Dial(ctx, addr, tlsConf)
		if err == nil && qc.Resumed() {
			srv.early.resumed.Inc()
		}
		return qc, err
	}
	qc, err := tr.DialEarly(ctx, addr, tlsConf)
	if err != nil {
		return nil, err
	}
	if !qc.Early() {
		if qc.Resumed() {
			srv.early.resumed.Inc()
		}
		return qc, nil
	}
	rt.trMu.Lock()
	defer rt.trMu.Unlock()
	if rt.closed {
		qc.Close()
		return nil, net.ErrClosed
	}
	rt.wg.Go(func() { // ends with the handshake, the connection or the backend
		select {
		case <-qc.HandshakeComplete():
		case <-qc.Done():
			return
		case <-rt.ctx.Done():
			return
		}
		if qc.Resumed() {
			srv.early.resumed.Inc()
		}
		if !qc.QUIC().ConnectionState().Used0RTT {
			srv.early.forgetTicket()
		}
	})
	return qc, nil
}

// roundTrip sends req on c, in 0-RTT data when the backend allows it, the
// request is safe (h3.CanSendEarly) and c's handshake has not completed.
// A 425 Too Early answer to an early request (RFC 8470 section 5.2) is not
// the client's: the request is sent again on c once its handshake
// completed, without the Early-Data header. That takes a second unit of
// c's stream credit, which the h3 client reserves as for any request.
func (srv *Server) roundTrip(c *Conn, req *http.Request) (*http.Response, error) {
	if !c.quic.Early() || !h3.CanSendEarly(req) {
		return c.h3.RoundTrip(req)
	}
	ereq := *req
	ereq.Header = req.Header.Clone()
	ereq.Header.Set(earlyHeader, "1")
	rsp, early, err := c.h3.RoundTripEarly(&ereq)
	e := srv.early
	if early {
		e.sent.Inc()
	}
	if err != nil {
		if early && c.EarlyRejected(err) {
			e.rejected.Inc()
		}
		return nil, err
	}
	if rsp.StatusCode != http.StatusTooEarly {
		if early {
			e.accepted.Inc()
		}
		rsp.Request = req
		return rsp, nil
	}
	rsp.Body.Close()
	e.tooEarly.Inc()
	return c.h3.RoundTrip(req) // quic-go waits for the handshake
}

// EarlyRejected reports whether a request failed with err on c because
// the server rejected c's early data. The server then processed nothing
// sent on c (RFC 9001 section 4.6.2), so the request can be sent again on
// another connection whatever its method. It forgets the server's ticket
// at once: the requests fail before c's handshake completes, and the dial
// of their next attempt must not offer the same ticket again.
func (c *Conn) EarlyRejected(err error) bool {
	if c.early == nil || !c.quic.Rejected0RTT(err) {
		return false
	}
	c.early.early.forgetTicket()
	return true
}

// forgetTicket drops the server's ticket after it rejected early data.
func (e *serverEarly) forgetTicket() { e.tickets.Put(e.sni, nil) }
