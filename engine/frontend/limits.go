package frontend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// ConnLimit counts open client connections against a ceiling. It is a
// counter, not a semaphore: a connection over the limit is refused at once
// rather than queued, since holding it would cost what the limit saves.
type ConnLimit struct {
	max atomic.Int64 // 0: no ceiling (a frontend that defers to the engine's)
	n   atomic.Int64
}

// acquire takes a slot, or reports false when the limit is reached. It
// compares and swaps rather than adding and backing off, so that a burst
// of accepts at the limit does not refuse more than it must.
func (l *ConnLimit) acquire() bool {
	for {
		n, m := l.n.Load(), l.max.Load()
		if m > 0 && n >= m {
			return false
		}
		if l.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (l *ConnLimit) release() { l.n.Add(-1) }

// SetMax sets the ceiling (0: none); connections over a lowered one stay.
func (l *ConnLimit) SetMax(n int) { l.max.Store(int64(n)) }

// Refusal reasons of xdpnet_connections_refused_total.
const (
	RefusedFrontend = "frontend_limit" // the frontend's max_connections
	RefusedEngine   = "engine_limit"   // the engine's max_connections
)

// admit takes a connection slot of the frontend and one of the engine, or
// counts the refusal and returns false. Each admitted connection calls
// leave once when it closes.
func (fe *Frontend) admit() bool {
	reason := fe.tryAdmit()
	if reason != "" {
		fe.env.Counters.Refused.WithLabelValues(fe.cfg.Name, reason).Inc()
	}
	return reason == ""
}

// tryAdmit is admit without the count: it returns the refusal reason, or
// "" with both slots taken.
func (fe *Frontend) tryAdmit() string {
	if !fe.conns.acquire() {
		return RefusedFrontend
	}
	if !fe.env.Conns.acquire() {
		fe.conns.release()
		return RefusedEngine
	}
	return ""
}

func (fe *Frontend) leave() {
	fe.conns.release()
	fe.env.Conns.release()
}

// limitListener closes accepted TCP connections over the frontend's or the
// engine's limit, or without a reservation of their buffers in the memory
// budget (admitBudget), before the HTTP server sees them. The handshake is done
// by then (the stack's listen backlog answers the SYN), so the client sees
// its connection accepted and closed rather than refused. The admitted
// ones leave when the server reports them closed (http.Server.ConnState).
type limitListener struct {
	net.Listener
	fe *Frontend
}

func (l limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.fe.admit() {
			c.Close()
			continue
		}
		if !l.fe.admitBudget(c) {
			l.fe.leave()
			continue
		}
		return c, nil
	}
}

// errConnLimit refuses a QUIC connection over the limit: quic-go answers
// its Initial with CONNECTION_REFUSED.
var errConnLimit = errors.New("connection limit reached")

// quicConnContext is the h3 frontend's quic.Transport.ConnContext: it
// admits a new QUIC connection before its handshake, under the connection
// limits and with its reservation in the memory budget (QUICBudget), and
// leaves and releases when the connection (or its handshake) ends: quic-go
// ends ctx then, once. A connection without room waits up to
// buffers.accept_wait; quic-go's server loop waits with it, new Initial
// packets queuing meanwhile (up to 1024, then dropped: the client
// retransmits), as TCP connections queue in the listen backlog behind a
// waiting accept; established connections' packets do not go through it.
// A refused connection's Initial is answered CONNECTION_REFUSED (RFC 9000
// section 20.1) before any handshake state exists.
func (fe *Frontend) quicConnContext(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
	reason := fe.tryAdmit()
	if reason == "" && !fe.env.QUIC.admit(fe.quicStop) {
		fe.leave()
		reason = RefusedBudget
	}
	if reason != "" {
		if ap, _ := addrPort(ci.RemoteAddr); !fe.quicRefused.again(ap, time.Now()) {
			fe.env.Counters.Refused.WithLabelValues(fe.cfg.Name, reason).Inc()
			if reason == RefusedBudget {
				fe.env.Log.Debug("QUIC connection refused: no buffer reservation within buffers.accept_wait", "frontend", fe.cfg.Name, "client", ci.RemoteAddr)
			}
		}
		if reason == RefusedBudget {
			return nil, ErrQUICBudget
		}
		return nil, errConnLimit
	}
	context.AfterFunc(ctx, func() {
		fe.env.QUIC.release()
		fe.leave()
	})
	return ctx, nil
}

// recentRefusals tells a refused QUIC connection attempt from the further
// Initial packets of the same attempt. quic-go calls ConnContext, and
// answers CONNECTION_REFUSED, for each Initial packet of a connection it
// does not know, and one attempt often sends two (a ClientHello with a
// post-quantum key share does not fit in one) or retransmits: counted per
// packet, a refused attempt would count twice or more. It remembers the
// last few refused client addresses for a second; an attempt from a
// client address:port refused less than a second earlier is not counted.
type recentRefusals struct {
	mu   sync.Mutex
	ring [16]struct {
		addr netip.AddrPort
		at   time.Time
	}
	next int
}

// again records a refusal of addr at now and reports whether addr was
// already refused within the last second.
func (r *recentRefusals) again(addr netip.AddrPort, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.ring {
		if e.addr == addr && now.Sub(e.at) < time.Second {
			return true
		}
	}
	r.ring[r.next].addr, r.ring[r.next].at = addr, now
	r.next = (r.next + 1) % len(r.ring)
	return false
}

// errBodyTimeout is the error of a request body read that waited longer
// than the frontend's timeouts.body.
var errBodyTimeout = errors.New("request body timeout")

// timedBody is a request body whose every Read must return within timeout
// (nginx's client_body_timeout): before each Read it moves the client
// stream's read deadline (http.ResponseController: the TCP connection for
// HTTP/1.1, the stream for h2c and HTTP/3). A Read that hits the deadline
// returns errBodyTimeout and cancels the request's backend attempt, which
// would otherwise wait on a body that is not coming (on h2c and HTTP/3 the
// request context stays alive). At the end of the body the deadline is
// cleared: on HTTP/1.1 net/http then reads the connection in the
// background to notice a client that goes away, and a deadline left behind
// would cancel the request while the backend is still answering.
//
// While the response streams to the client, a read waiting on a quiet
// client is not a stall: the response copier calls active for each chunk
// it writes, which pushes the pending read's deadline back. A gRPC
// bidirectional stream whose client sends nothing while the server
// streams to it is thus not cut, as in Envoy, whose stream idle timeout
// counts activity either way.
type timedBody struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	cancel  context.CancelCauseFunc // of the backend attempts' context

	timedOut atomic.Bool
	// broken is set when the client's body failed to read other than
	// by the timeout: malformed chunked coding, a body cut short.
	broken atomic.Bool
	// done is set when the handler returns: the ResponseController must
	// not be used after that, and the HTTP/3 client may still be reading
	// the body in its own goroutine.
	done atomic.Bool

	// mu orders active's deadline pushes with the start and end of a
	// Read: none lands after a Read returned (at the end of the body that
	// would leave a deadline behind).
	mu      sync.Mutex
	reading atomic.Bool // a Read waits on the client
	pushed  time.Time   // when the deadline was last set
}

func (b *timedBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	b.mu.Lock()
	b.pushed = time.Now()
	b.rc.SetReadDeadline(b.pushed.Add(b.timeout))
	b.reading.Store(true)
	b.mu.Unlock()
	n, err := b.body.Read(p)
	b.mu.Lock()
	b.reading.Store(false)
	b.mu.Unlock()
	if err == nil {
		return n, nil
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		b.timedOut.Store(true)
		b.cancel(errBodyTimeout)
		return n, errBodyTimeout
	}
	if err != io.EOF && !errors.Is(err, http.ErrBodyReadAfterClose) { // the latter: closed on our side
		b.broken.Store(true)
	}
	if !b.done.Load() {
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (b *timedBody) Close() error { return b.body.Close() }

// active tells b (nil: no body timeout) that a chunk of the response went
// to the client; a pending Read then gets its full timeout again from now.
// Called from the handler's goroutine only (the ResponseController is
// valid there). Deadlines move at most every eighth of the timeout, so a
// fast stream does not pay for one per chunk.
func (b *timedBody) active() {
	if b == nil || !b.reading.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now := time.Now(); b.reading.Load() && now.Sub(b.pushed) >= b.timeout/8 {
		b.pushed = now
		b.rc.SetReadDeadline(now.Add(b.timeout))
	}
}

// timeBody returns out with its body (the client's) in a timedBody and a
// context the timedBody cancels, and the timedBody; out and nil when the
// frontend has no body timeout. The caller calls finish when its handler
// returns.
func (h *httpProxy) timeBody(w http.ResponseWriter, out *http.Request) (*http.Request, *timedBody) {
	d := h.fe.cfg.Timeouts.Body.D()
	if d <= 0 {
		return out, nil
	}
	ctx, cancel := context.WithCancelCause(out.Context())
	tb := &timedBody{body: out.Body, rc: http.NewResponseController(w), timeout: d, cancel: cancel}
	out = out.WithContext(ctx)
	out.Body = tb
	return out, tb
}

// cut reports whether the body timed out (false for nil: no timeout).
func (b *timedBody) cut() bool { return b != nil && b.timedOut.Load() }

// malformed reports whether the client's body failed to read (false for
// nil).
func (b *timedBody) malformed() bool { return b != nil && b.broken.Load() }

// finish marks the handler done (see done) and releases the context.
func (b *timedBody) finish() {
	if b != nil {
		b.done.Store(true)
		b.cancel(nil)
	}
}

// badBody answers a request whose body could not be read (RFC 9112
// section 7.1: a malformed chunked coding; a body cut short): 400, the
// client's fault and not its backend's, with the HTTP/1.1 connection
// closed after it (where the body ends is unknown).
func (h *httpProxy) badBody(w http.ResponseWriter, r *http.Request) (int, string) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	http.Error(w, "400 Bad Request: malformed or incomplete request body", http.StatusBadRequest)
	return http.StatusBadRequest, "bad_request"
}

// bodyTimedOut answers a request whose body stalled: 408, with the
// HTTP/1.1 connection closed after it (the rest of the body would be read
// as the next request). It counts the cut.
func (h *httpProxy) bodyTimedOut(w http.ResponseWriter, r *http.Request) (int, string) {
	h.fe.env.Counters.ClientTimeouts.WithLabelValues(h.fe.cfg.Name, "body").Inc()
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	http.Error(w, "request body timeout", http.StatusRequestTimeout)
	return http.StatusRequestTimeout, "body_timeout"
}

// errSendTimeout is the error of a response write the client did not take
// within the frontend's timeouts.send.
var errSendTimeout = errors.New("response send timeout: the client stopped reading")

// sendDeadline bounds each write of a response body (nginx's
// send_timeout): before a write it moves the client stream's write
// deadline (http.ResponseController: the TCP connection for HTTP/1.1, the
// stream for HTTP/2 and HTTP/3) to timeout from now. A client that stops
// reading fills its TCP window or its stream's flow-control window, the
// write blocks, and the deadline ends it; without one the request would
// hold its connection, payload buffer and backend stream for as long as
// the client cares to wait. Deadlines move at most every eighth of the
// timeout, so a fast download does not pay for one per chunk; a write then
// has at least seven eighths of it.
//
// On HTTP/2 the stream's deadline resets the stream only once the
// RST_STREAM frame is written, which waits behind a frame the connection
// is stuck writing when the client stopped reading the connection itself
// (a full TCP window) rather than one stream: a write still blocked a
// quarter of the timeout past its deadline then closes the client's
// connection (cut), as a stuck write of nginx's does.
type sendDeadline struct {
	rc       *http.ResponseController
	timeout  time.Duration // 0: no bound
	set      time.Time     // when the deadline was last moved; zero: never
	deadline time.Time
	cut      func()      // closes the client connection (HTTP/2), else nil
	stuck    *time.Timer // runs cut; made at the first arm
}

// arm moves the deadline before a write, unless it moved recently.
func (d *sendDeadline) arm() {
	if d.timeout <= 0 {
		return
	}
	now := time.Now()
	if now.Sub(d.set) < d.timeout/8 {
		return
	}
	d.set, d.deadline = now, now.Add(d.timeout)
	d.rc.SetWriteDeadline(d.deadline)
	if d.cut == nil {
		return
	}
	if grace := d.timeout + d.timeout/4; d.stuck == nil {
		d.stuck = time.AfterFunc(grace, d.cut)
	} else {
		d.stuck.Reset(grace)
	}
}

// clear removes the deadline at the end of the body: on HTTP/1.1 the
// connection's next response must not inherit it.
func (d *sendDeadline) clear() {
	if d.stuck != nil {
		d.stuck.Stop()
	}
	if !d.set.IsZero() {
		d.rc.SetWriteDeadline(time.Time{})
	}
}

// timedOut reports whether the failed write ended at the deadline. The
// error does not always say so: net/http's HTTP/2 server resets the stream
// at the deadline and the write returns "stream closed".
func (d *sendDeadline) timedOut(err error) bool {
	if d.set.IsZero() {
		return false
	}
	return errors.Is(err, os.ErrDeadlineExceeded) || !time.Now().Before(d.deadline)
}

// cause returns err, wrapped in errSendTimeout when the deadline ended it.
func (d *sendDeadline) cause(err error) error {
	if d.timedOut(err) {
		return fmt.Errorf("%w: %w", errSendTimeout, err)
	}
	return err
}
