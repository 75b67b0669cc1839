package frontend

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/xdpnet/xdpnet/engine/backend"
	"github.com/xdpnet/xdpnet/engine/config"
)

// WebSocket (upgrade.go): an HTTP/1.1 request that asks to switch to the
// WebSocket protocol (RFC 6455 section 4.1: a GET with "Connection:
// Upgrade" and "Upgrade: websocket"; RFC 9110 section 7.8) goes to an
// http1 or http1-tls backend on a connection dialled for it alone
// (backend.Backend.DialDedicated): after a 101 the connection carries
// WebSocket frames and can never serve another request, so it is never
// taken from the pool nor given back. A 101 is written to the client, its
// connection is taken from the http.Server and both connections are
// spliced until either side closes (splice: the frontend's idle timeout,
// the drain deadline); any other answer is forwarded as a normal
// response. h2, h2c and h3 backends have no HTTP/1.1 Upgrade (RFC 9113
// section 8.6, RFC 9114 section 4.2) and their WebSocket bootstrap
// (extended CONNECT, RFC 8441 and RFC 9220) is not spoken: such a request
// gets 501 rather than reaching the server as a plain GET.

// webSocketUpgrade reports whether r asks to switch its connection to the
// WebSocket protocol (RFC 6455 section 4.1). Other upgrades (h2c's, which
// net/http handles itself) are not: their Upgrade field is dropped as
// hop-by-hop as before. A request without a Connection field, all others,
// costs one map lookup.
func webSocketUpgrade(r *http.Request) bool {
	conn := r.Header["Connection"]
	return conn != nil && r.ProtoMajor == 1 && r.ProtoMinor == 1 && r.Method == http.MethodGet &&
		r.ContentLength == 0 && httpguts.HeaderValuesContainsToken(conn, "upgrade") &&
		httpguts.HeaderValuesContainsToken(r.Header["Upgrade"], "websocket")
}

// errUpgradeRefused is a 101 from a server to another protocol than the
// one asked for.
var errUpgradeRefused = errors.New("backend switched to another protocol than websocket")

// upgrade serves a WebSocket handshake r routed to rte (see the top of
// this file). It returns the status sent and a result label for metrics:
// upgraded once the connection was switched and has ended.
func (h *httpProxy) upgrade(w http.ResponseWriter, r *http.Request, rte *route, sess *session, rec *accessRec) (int, string) {
	rt := rte.be
	cfg := rt.Config()
	if p := cfg.Protocol; p != config.BackendHTTP1 && p != config.BackendHTTP1TLS {
		code := http.StatusNotImplemented
		http.Error(w, fmt.Sprintf("501 Not Implemented: WebSocket upgrade: route %s: backend %s speaks %s, which has no HTTP/1.1 Upgrade (only http1 and http1-tls backends carry WebSockets)",
			rte.name, cfg.Name, p), code)
		h.fe.env.Counters.Tunnels.WithLabelValues(h.fe.cfg.Name, "not_implemented").Inc()
		return code, "not_implemented"
	}
	out := upgradeRequest(r)
	var key []byte
	if cfg.Balance == config.BalanceHash {
		key = hashKey(cfg.HashKey, r, sess)
	}
	ctx := backend.WithWorker(r.Context(), sess.worker)
	excluded := make([]bool, rt.NumServers())
	var (
		lastErr error
		lastSrv *backend.Server
	)
	// Only the dial is retried: once the request went out, the server
	// may have switched.
	for attempt := 0; attempt <= rte.retries; attempt++ {
		si, ok := rt.Pick(attempt, key, excluded)
		if !ok {
			lastErr = backend.ErrNoServer
			break
		}
		srv := rt.Server(si)
		rec.server, rec.retries = srv.Name(), attempt
		bc, err := rt.DialDedicated(ctx, sess.worker, si)
		if err == nil {
			code, result, err := h.switchProtocols(w, r, out, rte, srv, bc, rec)
			if err == nil {
				return code, result
			}
			lastErr, lastSrv = err, srv
			break
		}
		lastErr, lastSrv = err, srv
		if errors.Is(err, backend.ErrBudget) {
			break // another server's dial would wait for the same room
		}
		if r.Context().Err() == nil {
			rt.ConnectFailed(srv, err)
		}
		if *cfg.Redisp {
			excluded[si] = true
		}
	}
	h.fe.env.Counters.Tunnels.WithLabelValues(h.fe.cfg.Name, "failed").Inc()
	return h.failed(w, r, rte, lastSrv, lastErr)
}

// upgradeRequest is r as the backend gets it: outRequest's, with the two
// hop-by-hop fields the upgrade is about kept (RFC 9110 section 7.8: a
// proxy must forward Upgrade with "Connection: upgrade" for the next hop
// to switch).
func upgradeRequest(r *http.Request) *http.Request {
	out := outRequest(r)
	out.Header["Connection"] = []string{"Upgrade"}
	out.Header["Upgrade"] = r.Header["Upgrade"]
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // else http.Request.Write sends Go's
	}
	out.Body, out.ContentLength = nil, 0
	return out
}

// switchProtocols sends out on bc, a connection to srv of its own, and
// answers the client: with the 101 and the spliced connections, or with the
// server's other response. bc is closed on return. An error means the
// server gave no response, nothing was written to the client and the
// caller answers it.
func (h *httpProxy) switchProtocols(w http.ResponseWriter, r, out *http.Request, rte *route, srv *backend.Server, bc net.Conn, rec *accessRec) (int, string, error) {
	defer bc.Close()
	srv.AddInflight(1)
	defer srv.AddInflight(-1)
	sent := time.Now()
	// The request timeout covers the request and the response's headers,
	// as for other requests.
	if rte.request > 0 {
		bc.SetDeadline(sent.Add(rte.request))
	}
	br := bufio.NewReader(bc)
	err := out.Write(bc)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(br, out)
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = backend.ErrRequestTimeout
		}
		return 0, "", err
	}
	defer resp.Body.Close()
	bc.SetDeadline(time.Time{})
	rec.upstream = time.Since(sent)
	srv.CountRequest()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		code, result := h.plainResponse(w, r, resp)
		return code, result, nil
	}
	upg := resp.Header["Upgrade"]
	if !httpguts.HeaderValuesContainsToken(upg, "websocket") {
		return 0, "", fmt.Errorf("%w: %q", errUpgradeRefused, upg)
	}
	hdr := resp.Header
	removeHopHeaders(hdr)
	hdr["Connection"], hdr["Upgrade"] = []string{"Upgrade"}, upg
	result, err := h.splice101(w, r, hdr, bc, br)
	if err != nil {
		return 0, "", err
	}
	return http.StatusSwitchingProtocols, result, nil
}

// plainResponse forwards a response other than 101 to the handshake: the
// server refused the upgrade (RFC 6455 section 4.1: the client then sees
// the ordinary HTTP response).
func (h *httpProxy) plainResponse(w http.ResponseWriter, r *http.Request, resp *http.Response) (int, string) {
	buf, err := h.payloadBuffer(r.Context())
	if err != nil {
		return h.noBuffer(w, r, err)
	}
	defer h.fe.env.Payload.Release(buf)
	hdr := w.Header()
	removeHopHeaders(resp.Header)
	for k, v := range resp.Header {
		hdr[k] = v
	}
	h.fe.advertise(hdr)
	w.WriteHeader(resp.StatusCode)
	err = copyBody(w, resp.Body, resp.ContentLength < 0, nil, buf, h.fe.cfg.Timeouts.Send.D(), nil)
	if errors.Is(err, errSendTimeout) {
		h.fe.env.Counters.ClientTimeouts.WithLabelValues(h.fe.cfg.Name, "send").Inc()
		return resp.StatusCode, "send_timeout"
	}
	if err != nil {
		return resp.StatusCode, "aborted"
	}
	return resp.StatusCode, "ok"
}

// splice101 writes the 101 with hdr to the client, takes its connection
// from the http.Server and splices it with bc until either side ends; br
// holds what the server sent after its 101. It returns the result label,
// or an error when nothing was written to the client.
func (h *httpProxy) splice101(w http.ResponseWriter, r *http.Request, hdr http.Header, bc net.Conn, br *bufio.Reader) (string, error) {
	fe := h.fe
	e := fe.env
	cc := clientOf(connOf(r))
	if cc != nil {
		// The connection stays the frontend's (its max_connections slot,
		// its buffers' reservation): the hijack is not its end, which
		// connGone below is.
		cc.state.Store(connUpgraded)
	}
	// Added while the server still counts the connection active, so
	// before Shutdown can wait for it (see Shutdown).
	fe.upgrades.Add(1)
	defer fe.upgrades.Done()
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		if cc != nil {
			cc.state.Store(connServed)
		}
		return "", fmt.Errorf("take the client connection over: %w", err)
	}
	// A switched connection is a tunnel, not a request in flight: a drain
	// cut counts it in xdpnet_tunnels_total, not as a cut request.
	e.InflightN.Add(-1)
	defer e.InflightN.Add(1)
	e.TunnelsN.Add(1)
	defer e.TunnelsN.Add(-1)
	client := &upgradedConn{Conn: c}
	if cc != nil {
		// Past clientConn's framing scan, which is for HTTP requests.
		client.Conn = cc.Conn
		defer fe.connGone(cc)
	}
	defer client.Conn.Close()
	// Bytes the server read ahead of the handshake's end (a client that
	// sent its first frame at once), then those a park kept.
	var ahead []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		ahead = append(ahead, b...)
	}
	if cc != nil {
		ahead = append(ahead, cc.pending...)
		cc.pending = nil
	}
	client.ahead = ahead

	if _, err := client.Write(switchingHead(hdr)); err != nil {
		e.Counters.Tunnels.WithLabelValues(fe.cfg.Name, "reset").Inc()
		return "client_gone", nil
	}
	err = splice(client, &upgradedStream{Conn: bc, r: br}, fe.cfg.Timeouts.Idle.D(), fe.cutCtx.Done())
	e.Counters.Tunnels.WithLabelValues(fe.cfg.Name, tunnelResult(err)).Inc()
	return "upgraded", nil
}

// webSocketFields are the spellings of RFC 6455 section 11.3's fields,
// which net/http's canonical form (Sec-Websocket-Accept) is not: field
// names are case-insensitive (RFC 9110 section 5.1), but clients that
// compare them as written exist, and the server's own spelling is lost
// once parsed.
var webSocketFields = map[string]string{
	"Sec-Websocket-Accept":     "Sec-WebSocket-Accept",
	"Sec-Websocket-Protocol":   "Sec-WebSocket-Protocol",
	"Sec-Websocket-Extensions": "Sec-WebSocket-Extensions",
	"Sec-Websocket-Version":    "Sec-WebSocket-Version",
}

var headerNewlines = strings.NewReplacer("\r", " ", "\n", " ")

// switchingHead is the 101 response's head with hdr's fields.
func switchingHead(hdr http.Header) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	for _, k := range slices.Sorted(maps.Keys(hdr)) {
		name := k
		if n, ok := webSocketFields[k]; ok {
			name = n
		}
		for _, v := range hdr[k] {
			// As http.Header.Write: a line break never splits a field.
			b.WriteString(name + ": " + headerNewlines.Replace(strings.TrimSpace(v)) + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// upgradedConn is a switched client connection: the bytes read ahead of
// the switch, then the connection's.
type upgradedConn struct {
	net.Conn
	ahead []byte
}

func (c *upgradedConn) Read(p []byte) (int, error) {
	if len(c.ahead) > 0 {
		n := copy(p, c.ahead)
		c.ahead = c.ahead[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *upgradedConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// upgradedStream is a switched backend connection as splice's stream: read
// through the reader that parsed the 101 (which may hold the first
// frames), reset by closing it (TCP has nothing closer to a stream reset
// that is safe while the copies use the connection).
type upgradedStream struct {
	net.Conn
	r io.Reader
}

func (s *upgradedStream) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *upgradedStream) ID() uint64                 { return 0 }
func (s *upgradedStream) Reset() error               { return s.Conn.Close() }

func (s *upgradedStream) CloseWrite() error {
	if cw, ok := s.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return nil
}
