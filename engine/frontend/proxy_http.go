package frontend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xdpnet/xdpnet/engine/backend"
	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/reuse"
)

// MaxReplayBody is the largest request body the proxy buffers so that an
// idempotent request can be sent again after a failure. Larger bodies stream
// and are retried only when nothing was sent.
const MaxReplayBody = 64 << 10

// session is one client connection's state, carried in its context: the
// worker serving it and its reuse sessions (one per backend it used).
type session struct {
	worker int
	remote netip.Addr

	mu sync.Mutex
	// rs is the reuse session of the client's first backend, more those
	// of other backends (routes): most connections use one backend, and
	// an idle one keeps its session, so the first needs no map.
	rs     backendSession
	more   map[*backend.Backend]*reuse.Session
	closed bool
}

// backendSession is a client session's reuse session for one backend.
type backendSession struct {
	b  *backend.Backend
	rs *reuse.Session
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}

// reuseSession returns the session's reuse session for rt, or nil once the
// client connection ended.
func (s *session) reuseSession(rt *backend.Backend) *reuse.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if s.rs.b == rt {
		return s.rs.rs
	}
	if rs := s.more[rt]; rs != nil {
		return rs
	}
	rs := rt.NewSession(s.worker)
	switch {
	case s.rs.b == nil:
		s.rs = backendSession{rt, rs}
	case s.more == nil:
		s.more = map[*backend.Backend]*reuse.Session{rt: rs}
	default:
		s.more[rt] = rs
	}
	return rs
}

// close ends the client session: its private backend connections close.
func (s *session) close() {
	s.mu.Lock()
	first, more := s.rs.rs, s.more
	s.rs, s.more, s.closed = backendSession{}, nil, true
	s.mu.Unlock()
	if first != nil {
		first.Close()
	}
	for _, r := range more {
		r.Close()
	}
}

// hopHeaders are connection-specific (RFC 9110 section 7.6.1) and never
// forwarded; HTTP/3 forbids them outright (RFC 9114 section 4.2).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Http2-Settings",
}

func removeHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for name := range strings.SplitSeq(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// httpProxy is the handler of http, https and h3 frontends: it forwards each
// request to a server of the frontend's backend over that backend's HTTP
// (HTTP/3, HTTP/2 or HTTP/1.1).
type httpProxy struct {
	fe *Frontend
}

func (h *httpProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A goroutine of its own per request (HTTP/2, HTTP/3), or a fresh
	// one per connection (stack.go).
	if r.ProtoMajor > 1 {
		growStack()
	} else if c := clientOf(connOf(r)); c != nil && c.fresh {
		c.fresh = false
		growStack()
	}
	fe := h.fe
	e := fe.env
	start := time.Now()
	e.Inflight.Add(1)
	e.InflightN.Add(1)
	defer func() {
		e.InflightN.Add(-1)
		e.Inflight.Done()
	}()
	fe.advertise(w.Header())
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		// A backend may answer before the upload ends (an echo, a
		// streaming API); net/http's HTTP/1.x server would then close
		// the request body at the first response write and truncate the
		// upload. HTTP/2 and HTTP/3 are full duplex already.
		http.NewResponseController(w).EnableFullDuplex()
	}
	var pw *parkWriter
	if fe.resume != nil && r.ProtoMajor == 1 { // plain HTTP/1.1 connections are parked while idle (park.go)
		pw = &parkWriter{ResponseWriter: w}
		w = pw
	}
	var (
		rec accessRec
		cw  *countingWriter
		cb  *countingBody
	)
	al := fe.accessLogger()
	if al != nil {
		cw = &countingWriter{ResponseWriter: w}
		w = cw
		if r.Body != nil && r.Body != http.NoBody {
			cb = &countingBody{ReadCloser: r.Body}
			r.Body = cb
		}
	}
	var (
		code   int
		result string
	)
	var rte *route
	if badFraming(r) {
		code = refuseFraming(w)
		e.Counters.Requests.WithLabelValues(fe.cfg.Name, statusClass(code), "bad_request").Inc()
	} else if r.Method == http.MethodConnect {
		// A tunnel request (RFC 9110 section 9.3.6) is a forward
		// proxy's business: the gateway does not open tunnels from
		// HTTP requests (tcp frontends do), and one sent on to a
		// backend that answered 2xx would wait for a body that never
		// comes. 501: the method is known, the function not provided.
		code = http.StatusNotImplemented
		http.Error(w, "501 Not Implemented: CONNECT (xdpnet is a reverse proxy; tunnels are tcp frontends)", code)
		e.Counters.Requests.WithLabelValues(fe.cfg.Name, statusClass(code), "not_implemented").Inc()
	} else if rte = fe.acquireRoute(r.Host, r.URL.Path); rte == nil {
		code = notFound(w)
		e.Counters.Requests.WithLabelValues(fe.cfg.Name, statusClass(code), "no_route").Inc()
	} else {
		defer rte.be.Release()
		sess := sessionFrom(r.Context())
		if sess == nil { // not reached through a frontend's ConnContext
			sess = &session{}
			defer sess.close()
		}
		if webSocketUpgrade(r) {
			code, result = h.upgrade(w, r, rte, sess, &rec)
		} else {
			code, result = h.forward(w, r, rte, sess, &rec)
		}
		e.Counters.Requests.WithLabelValues(fe.cfg.Name, statusClass(code), result).Inc()
		e.Counters.RouteRequests.WithLabelValues(fe.cfg.Name, rte.name, statusClass(code)).Inc()
	}
	if result != "upgraded" { // a WebSocket's life is not a response's latency
		fe.latency.Observe(time.Since(start).Seconds())
	}
	if al != nil {
		fe.logAccess(al, r, start, rte, code, cb, cw, &rec)
	}
	if result == "aborted" || result == "send_timeout" {
		// The backend's response broke off after its headers went out:
		// the client's stream is reset (HTTP/2 RST_STREAM, HTTP/3
		// stream error, HTTP/1.1 connection closed without the last
		// chunk) rather than ended cleanly, which would make a truncated
		// response look complete.
		panic(http.ErrAbortHandler)
	}
	if pw != nil && result == "ok" {
		fe.park(pw, r)
	}
}

func statusClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	case code >= 200:
		return "2xx"
	}
	return "1xx"
}

// forward runs the attempts of one request and writes the response. It
// returns the status sent and a result label for metrics.
func (h *httpProxy) forward(w http.ResponseWriter, r *http.Request, rte *route, sess *session, rec *accessRec) (int, string) {
	e := h.fe.env
	rt := rte.be
	cfg := rt.Config()

	out := outRequest(r)

	// Make the body replayable when it is small and known in size. A body
	// is read under the frontend's body timeout (timedBody).
	var body []byte
	var tb *timedBody
	replayable := true
	noBody := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	if !noBody {
		if out.Trailer == nil {
			out.Trailer = http.Header{}
		}
		out.Body = &trailerBody{ReadCloser: out.Body, from: r, to: out.Trailer}
		out, tb = h.timeBody(w, out)
		defer tb.finish()
	}
	switch {
	case noBody:
		out.Body, out.ContentLength = http.NoBody, 0
	case r.ContentLength > 0 && r.ContentLength <= MaxReplayBody:
		b, err := io.ReadAll(io.LimitReader(out.Body, r.ContentLength+1))
		if tb.cut() {
			return h.bodyTimedOut(w, r)
		}
		if err != nil || int64(len(b)) != r.ContentLength {
			http.Error(w, "incomplete request body", http.StatusBadRequest)
			return http.StatusBadRequest, "bad_request"
		}
		body = b // its trailers too: trailerBody saw the end
	default:
		replayable = false
	}

	// The response body's buffer is taken before the request goes out, so
	// that a request the budget cannot serve is refused before any
	// backend sees it (a 503 then never hides a processed POST), and held
	// until the response is done: one buffer per request, never a second
	// while holding one, so waiters cannot deadlock each other.
	buf, err := h.payloadBuffer(r.Context())
	if err != nil {
		return h.noBuffer(w, r, err)
	}
	defer e.Payload.Release(buf)

	var key []byte
	if cfg.Balance == config.BalanceHash {
		key = hashKey(cfg.HashKey, r, sess)
	}
	excluded := make([]bool, rt.NumServers())
	var (
		lastErr error
		lastSrv *backend.Server
	)
	for attempt := 0; attempt <= rte.retries; attempt++ {
		si, ok := rt.Pick(attempt, key, excluded)
		if !ok {
			lastErr = backend.ErrNoServer
			break
		}
		srv := rt.Server(si)
		rec.server, rec.retries = srv.Name(), attempt
		status, stage, err := h.attempt(w, r, out, body, replayable, rte, si, sess, tb, rec, buf)
		if err == nil {
			return status, "ok"
		}
		lastErr = err
		if stage == stageResponse {
			// Headers are out: the body broke off; nothing more to do.
			if errors.Is(err, errSendTimeout) {
				e.Counters.ClientTimeouts.WithLabelValues(h.fe.cfg.Name, "send").Inc()
				return status, "send_timeout"
			}
			return status, "aborted"
		}
		if tb.cut() {
			// The client stalled mid-body: not the server's fault.
			return h.bodyTimedOut(w, r)
		}
		if tb.malformed() && r.Context().Err() == nil {
			// Nor is a body the client broke.
			return h.badBody(w, r)
		}
		lastSrv = srv
		if stage == stageConnect && r.Context().Err() == nil {
			rt.ConnectFailed(srv, err)
		}
		// A server too slow to answer is not asked again, nor is another
		// one: retrying timeouts multiplies the load on a slow backend
		// (HAProxy retries them only with retry-on response-timeout).
		// Nor is one whose connection found no room in the memory
		// budget: another would wait for the same room.
		if errors.Is(err, backend.ErrRequestTimeout) || errors.Is(err, backend.ErrBudget) ||
			!retryable(r.Context(), stage, err, r.Method, replayable) {
			break
		}
		if *cfg.Redisp {
			excluded[si] = true
		}
	}
	return h.failed(w, r, rte, lastSrv, lastErr)
}

// outRequest is r as the backend gets it: without its hop-by-hop fields,
// with X-Forwarded-For, Via and X-Forwarded-Proto.
func outRequest(r *http.Request) *http.Request {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = "https"
	out.Host = r.Host
	removeHopHeaders(out.Header)
	if teTrailers(r.Header) {
		out.Header.Set("Te", "trailers") // see teTrailers
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		out.Header.Set("X-Forwarded-For", ip)
	}
	out.Header.Add("Via", via(r))
	// The scheme the client used, which the backend cannot see (it is
	// reached over its own protocol): applications build their redirects
	// and absolute links from it. Set, not appended: a client's own value
	// would let it pass for HTTPS (as Envoy and Caddy do at the edge).
	if r.TLS != nil {
		out.Header.Set("X-Forwarded-Proto", "https")
	} else {
		out.Header.Set("X-Forwarded-Proto", "http")
	}
	return out
}

// failed answers a request that got no response from a server of rte
// (lastSrv, nil when none was tried) after lastErr.
func (h *httpProxy) failed(w http.ResponseWriter, r *http.Request, rte *route, lastSrv *backend.Server, lastErr error) (int, string) {
	e := h.fe.env
	cfg := rte.be.Config()
	if r.Context().Err() != nil {
		return 499, "client_gone"
	}
	if errors.Is(lastErr, backend.ErrBudget) {
		// The backend connection it needed got no reservation.
		return h.noBuffer(w, r, lastErr)
	}
	f := backend.Classify(lastErr)
	hop := cfg.Name
	if lastSrv != nil {
		hop += "/" + lastSrv.Name()
	}
	e.Counters.Failures.WithLabelValues(cfg.Name, f.Reason).Inc()
	e.Log.Info("request failed", "frontend", h.fe.cfg.Name, "route", rte.name, "backend", cfg.Name, "next_hop", hop,
		"status", f.Status, "reason", f.Reason, "err", lastErr)
	// RFC 9209: the proxy names itself, the error type and the next hop.
	w.Header().Set("Proxy-Status", fmt.Sprintf("xdpnet; error=%s; next-hop=%q; details=%q", f.ProxyStatus, hop, f.Reason))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(f.Status)
	fmt.Fprintf(w, "%d %s: route %s: backend %s: %s\n", f.Status, http.StatusText(f.Status), rte.name, hop, f.Reason)
	return f.Status, "failed"
}

// errBodyCut ends an attempt whose request body the client stopped sending
// (timeouts.body).
var errBodyCut = errors.New("request body cut: client stalled")

// via is the Via field value (RFC 9110 section 7.6.3) the proxy adds for
// r's protocol version; constants, so that no request pays for building it.
func via(r *http.Request) string {
	switch r.ProtoMajor {
	case 3:
		return "3 xdpnet"
	case 2:
		return "2 xdpnet"
	}
	return "1.1 xdpnet"
}

// attempt sends out to server si. On success the response has been copied
// to w. It returns the response status (once there is one) and how far it
// got. body, when not nil, is the request body to send (again); tb, when
// not nil, is the client's body under the frontend's body timeout.
//
// A request that fails on a reused connection because that connection
// died (a server that restarted or forgot it while it sat idle) is sent
// once more on a freshly dialed connection to the same server through
// reuse.Worker.Retry, when that is safe: nothing was sent, or the method is
// idempotent and the body can be replayed. This is HAProxy's retry-on
// conn-failure/empty-response on a reused connection; it does not count
// against the backend's retries, which are for the server's own failures.
func (h *httpProxy) attempt(w http.ResponseWriter, r, out *http.Request, body []byte, replayable bool, rte *route, si int, sess *session, tb *timedBody, rec *accessRec, buf []byte) (int, attemptStage, error) {
	rt := rte.be
	srv := rt.Server(si)
	// The pool waits for nothing but a dial, which applies the connect
	// timeout itself (backend.Backend's dial).
	ctx := backend.WithWorker(r.Context(), sess.worker)
	// Sent again below if its reused connection dies before the response.
	retryable := idempotent(r.Method) && replayable
	l, err := rt.Attach(ctx, sess.worker, si, sess.reuseSession(rt), retryable)
	if err != nil {
		return 0, stageConnect, err
	}
	attached := time.Now()
	rec.reused = l.Reused()
	srv.AddInflight(1)
	defer srv.AddInflight(-1)

	// The request timeout covers the wait for response headers; the body
	// then streams for as long as the client reads it (see watch).
	rctx, cancel := context.WithCancel(out.Context())
	defer cancel()
	wa, rctx := newWatch(rctx, cancel, rte, srv)
	defer wa.stop()
	send := func(l reuse.Lease) (*http.Response, error) {
		req := out.WithContext(rctx)
		req.URL.Host = srv.Host()
		if body != nil {
			req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = &sentBody{ReadCloser: req.Body, w: wa}
		}
		c := l.Conn().(*backend.Conn)
		wa.sentOn.Store(c)
		return c.RoundTrip(req)
	}
	resp, err := send(l)
	if err != nil && r.Context().Err() == nil && l.Conn().(*backend.Conn).EarlyRejected(err) {
		// The server rejected the early data of the connection (backend
		// early_data): it processed nothing sent on it, so the request
		// goes once more, whatever its method, on another connection.
		l.Done(err)
		if l, err = rt.Attach(ctx, sess.worker, si, sess.reuseSession(rt), retryable); err != nil {
			return 0, stageConnect, err
		}
		wa.wrote.Store(false)
		resp, err = send(l)
	}
	// A server taken out or backing off meanwhile (its connections were
	// found dead) is not dialled again for this request: the retry loop
	// sends it elsewhere. Nor is one the server rejected unprocessed (a
	// GOAWAY below its stream): the connection did not go stale, and the
	// retry loop's next attempt takes any connection, or waits for one
	// being dialled, instead of a dial of its own per rejected request.
	if err != nil && l.Reused() && !wa.timedOut.Load() && r.Context().Err() == nil && !rejected(err) &&
		rt.Usable(si) && srv.BackoffLeft(time.Now()) <= 0 &&
		connDied(l.Conn().(*backend.Conn), err) && (!wa.wrote.Load() || retryable) {
		nl, rerr := rt.Retry(ctx, sess.worker, l, err)
		if rerr != nil {
			// The fresh dial failed: that one is the server's failure.
			return 0, stageConnect, rerr
		}
		l = nl
		rec.reused = false
		wa.wrote.Store(false)
		resp, err = send(l)
	}
	if err != nil {
		l.Done(err)
		if wa.timedOut.Load() {
			err = backend.ErrRequestTimeout
		}
		if !wa.wrote.Load() && !wa.timedOut.Load() {
			// The stream never opened: nothing reached the server.
			return 0, stageConnect, err
		}
		return 0, stageSent, err
	}
	wa.headers()
	rec.upstream = time.Since(attached)
	if tb.cut() {
		// The client stalled mid-body and the upload was cut: whatever
		// the server answered to a truncated request is not the client's
		// answer (the caller sends 408).
		resp.Body.Close()
		l.Done(errBodyCut)
		return 0, stageSent, errBodyCut
	}
	srv.CountRequest()
	defer resp.Body.Close()

	hdr := w.Header()
	removeHopHeaders(resp.Header)
	for k, v := range resp.Header {
		hdr[k] = v
	}
	h.fe.advertise(hdr)
	declareTrailers(hdr, resp.Trailer)
	if roomForTrailers(r, resp) {
		hdr.Del("Content-Length") // chunked, so that the trailers fit
	}
	w.WriteHeader(resp.StatusCode)
	if headersFirst(resp) {
		http.NewResponseController(w).Flush()
	}
	err = copyBody(w, resp.Body, resp.ContentLength < 0, tb, buf, h.fe.cfg.Timeouts.Send.D(), h2Cut(r))
	if err == nil {
		setTrailers(hdr, resp.Trailer) // complete now (see trailers.go)
	}
	resp.Body.Close()
	l.Done(err)
	return resp.StatusCode, stageResponse, err
}

// connDied reports whether a request failed because its connection died,
// as opposed to the server resetting just this request's stream: the
// connection's error is set, or err is a connection-level QUIC error (the
// stream errors can reach the request before the connection's close
// reaches the mux).
func connDied(c *backend.Conn, err error) bool {
	if c.Err() != nil {
		return true
	}
	var (
		reset *quic.StatelessResetError
		idle  *quic.IdleTimeoutError
		app   *quic.ApplicationError
		tr    *quic.TransportError
	)
	return errors.As(err, &reset) || errors.As(err, &idle) || errors.As(err, &app) || errors.As(err, &tr)
}

// sentBody marks the request as (partly) sent on its first read, and
// reports each read that moved bytes to the attempt's watch.
type sentBody struct {
	io.ReadCloser
	w *watch
}

func (b *sentBody) Read(p []byte) (int, error) {
	b.w.wrote.Store(true)
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.w.progress()
	}
	return n, err
}

// copyBody copies a response body through buf (the request's payload
// buffer, see forward), flushing after each chunk when the length is unknown
// (streaming responses reach the client as they come). Each chunk written
// tells tb (nil: none) that the client is alive. Each write must be taken
// by the client within send (timeouts.send; 0: no bound), else copyBody
// returns an error wrapping errSendTimeout; cut (nil: none) closes the
// client connection when the write is stuck past that (see sendDeadline).
func copyBody(w http.ResponseWriter, body io.Reader, stream bool, tb *timedBody, buf []byte, send time.Duration, cut func()) error {
	rc := http.NewResponseController(w)
	sd := sendDeadline{rc: rc, timeout: send, cut: cut}
	defer sd.clear()
	for {
		n, err := body.Read(buf)
		if n > 0 {
			sd.arm()
			if _, werr := w.Write(buf[:n]); werr != nil {
				return sd.cause(werr)
			}
			if stream {
				if ferr := rc.Flush(); ferr != nil && sd.timedOut(ferr) {
					return sd.cause(ferr)
				}
			}
			tb.active()
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// h2Cut returns what closes the client connection of an HTTP/2 request r
// (see sendDeadline), nil for other requests.
func h2Cut(r *http.Request) func() {
	if r.ProtoMajor != 2 {
		return nil
	}
	v, _ := r.Context().Value(connKey{}).(net.Conn)
	c := clientOf(v)
	if c == nil {
		return nil
	}
	// The accepted connection (TLS or not), not clientConn's Close, which
	// spares a connection handed to the HTTP/2 server (handoff.go).
	return func() { c.Conn.Close() }
}

// hashKey returns the bytes hash balancing hashes for r.
func hashKey(kind string, r *http.Request, sess *session) []byte {
	switch {
	case kind == "uri":
		return []byte(r.URL.RequestURI())
	case strings.HasPrefix(kind, "header:"):
		return []byte(r.Header.Get(strings.TrimPrefix(kind, "header:")))
	}
	if sess.remote.IsValid() {
		return sess.remote.AsSlice()
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return []byte(host)
}
