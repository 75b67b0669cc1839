package h3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http/httpguts"

	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// errNotH3 is returned by NewClient for a connection that is not an HTTP/3
// client connection (its ALPN is not h3, or it is a server's).
var errNotH3 = errors.New("mux: not an HTTP/3 client connection")

// Client sends HTTP/3 requests (RFC 9114) on one chosen quicmux.Conn: the
// one reuse/ picked. It never dials; RoundTrip fails when that connection
// cannot take the request. It is an http.RoundTripper.
//
// Each request takes one unit of the connection's stream credit before
// quic-go opens its stream, so the connection's AvailStreams stays exact.
type Client struct {
	c      *quicmux.Conn
	credit *quicmux.H3Credit
	cc     *http3.ClientConn
}

var _ http.RoundTripper = (*Client)(nil)

// NewClient starts an HTTP/3 client session (control and QPACK streams) on
// c, a client connection that negotiated quicmux.ALPNH3. tr configures it
// (nil: defaults); only its HTTP/3 settings are used, never its dialing.
func NewClient(c *quicmux.Conn, tr *http3.Transport) (*Client, error) {
	credit := c.H3Credit()
	if credit == nil {
		return nil, fmt.Errorf("%w (negotiated %q)", errNotH3, c.ALPN())
	}
	if tr == nil {
		tr = &http3.Transport{}
	}
	return &Client{c: c, credit: credit, cc: tr.NewClientConn(c.QUIC())}, nil
}

// RoundTrip sends req on the client's connection and returns the response.
// Without stream credit it waits for the peer to grant more until the
// request's context ends (then mux.ErrNoCredit). The stream counts as used until
// the response body is closed or read to its end.
//
// A request without a body (the proxy's GETs) takes the direct path
// (roundTripNoBody): RoundTrip opens the request stream itself, so it knows
// exactly whether the stream exists, and neither it nor quic-go starts a
// goroutine per request. A request with a body goes through quic-go's
// ClientConn.RoundTrip, which sends the body from a goroutine of its own
// and is the only way to declare its Content-Length (see roundTripBody).
func (h *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	return h.roundTrip(req, false)
}

// roundTrip is RoundTrip; early sends req, a GET or HEAD without a body
// (CanSendEarly), without waiting for the handshake (RoundTripEarly).
func (h *Client) roundTrip(req *http.Request, early bool) (*http.Response, error) {
	if err := validRequest(req); err != nil {
		return nil, err
	}
	ctx := req.Context()
	if err := h.credit.Reserve(ctx); err != nil {
		return nil, err
	}
	if (req.Body == nil || req.Body == http.NoBody) && req.Method != http.MethodConnect {
		return h.roundTripNoBody(ctx, req, early)
	}
	return h.roundTripBody(ctx, req)
}

// roundTripNoBody sends req, which has no body, on a stream it opens
// itself, with one unit of credit reserved. It does what quic-go's
// ClientConn.RoundTrip does for such a request (RFC 9114 section 4.1: HEADERS,
// FIN, then the response's HEADERS after any 1xx ones) without its
// per-request goroutine that watches the context, its channels and its copy
// of the TLS connection state into every response.
func (h *Client) roundTripNoBody(ctx context.Context, req *http.Request, early bool) (*http.Response, error) {
	if !early {
		// 1-RTT requests wait for the handshake, as quic-go's RoundTrip
		// makes them (an early connection is usable before it).
		if err := h.handshake(ctx); err != nil {
			h.credit.StreamEnded()
			return nil, err
		}
	}
	// With credit reserved, quic-go has room for the stream: opening does
	// not wait (see quicmux.Conn), so the request's cancellation need not
	// reach it, only its values (trace hooks).
	str, err := h.cc.OpenRequestStream(context.WithoutCancel(ctx))
	if err != nil {
		if h.c.Err() == nil {
			// A GOAWAY (RFC 9114 section 5.2): no new streams here.
			h.credit.StopNew()
		}
		h.credit.StreamEnded()
		return nil, fmt.Errorf("mux: http3 request: %w", err)
	}
	r := &h3Stream{credit: h.credit, str: str}
	// The stream exists now: a cancelled request resets it (RFC 9114
	// section 4.1.1, H3_REQUEST_CANCELLED), which also ends a blocked
	// ReadResponse or body Read.
	r.stop = context.AfterFunc(ctx, r.cancel)
	rsp, err := r.send(req)
	if err != nil {
		r.cancel()
		r.done()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("mux: http3 request: %w", err)
	}
	rsp.Request = req
	r.body = rsp.Body
	rsp.Body = r
	return rsp, nil
}

// handshake waits until the connection's handshake completed or ctx ends.
func (h *Client) handshake(ctx context.Context) error {
	done := h.c.QUIC().HandshakeComplete()
	select {
	case <-done:
		return nil
	default:
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// max1xx is how many informational responses a request may get before its
// final one; quic-go's RoundTrip and net/http allow as many.
const max1xx = 5

// send writes req's headers, ends the stream's send side and reads the
// final response's headers, reporting 1xx ones to req's trace.
func (r *h3Stream) send(req *http.Request) (*http.Response, error) {
	if err := r.str.SendRequestHeader(req); err != nil {
		return nil, err
	}
	trace := httptrace.ContextClientTrace(req.Context())
	if trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{})
	}
	// The error is ignored, as quic-go's RoundTrip does: a server that
	// has read the request may already have stopped the stream's send
	// side (STOP_SENDING with H3_NO_ERROR, RFC 9114 section 4.1).
	r.str.Close()
	for n := 0; ; n++ {
		rsp, err := r.str.ReadResponse()
		if err != nil {
			return nil, err
		}
		// 101 is final (golang.org/issue/26161), as for net/http.
		if rsp.StatusCode < 100 || rsp.StatusCode > 199 || rsp.StatusCode == http.StatusSwitchingProtocols {
			return rsp, nil
		}
		if n == max1xx {
			return nil, errors.New("mux: http3: too many 1xx informational responses")
		}
		if trace != nil {
			if trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(rsp.StatusCode, textproto.MIMEHeader(rsp.Header)); err != nil {
					return nil, err
				}
			}
			if rsp.StatusCode == http.StatusContinue && trace.Got100Continue != nil {
				trace.Got100Continue()
			}
		}
	}
}

// h3Stream is a request of roundTripNoBody in flight; it is also its
// response's Body, so that the stream's credit returns once that body ends.
type h3Stream struct {
	credit *quicmux.H3Credit
	str    *http3.RequestStream
	// stop unhooks cancel from the request's context.
	stop func() bool
	body io.ReadCloser
	once sync.Once
}

// cancel resets both directions of the stream.
func (r *h3Stream) cancel() {
	r.str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
	r.str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
}

// done runs once, when the response body ends or the request failed.
func (r *h3Stream) done() {
	r.once.Do(func() {
		r.stop()
		r.credit.StreamEnded()
	})
}

func (r *h3Stream) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if err != nil {
		r.done()
	}
	return n, err
}

func (r *h3Stream) Close() error {
	err := r.body.Close()
	r.done()
	return err
}

// roundTripBody sends req, which has a body (or is a CONNECT), through quic-go's
// ClientConn.RoundTrip, with one unit of credit reserved.
//
// quic-go's ClientConn does not tell whether a failed request opened its
// stream; the credit count depends on knowing it. So the request's context
// reaches quic-go only once the request headers were written (the stream
// exists then), and header fields are validated before anything is sent,
// so that the only failures before that point are a dead connection or a
// GOAWAY (RFC 9114 section 5.2), which end the connection's use anyway.
func (h *Client) roundTripBody(ctx context.Context, req *http.Request) (*http.Response, error) {
	r := &h3Request{credit: h.credit, ctx: ctx}
	// rctx is cancelled by ctx only after the headers went out. It keeps
	// ctx's values: WithClientTrace composes the caller's trace hooks, if
	// any, with ours.
	var rctx context.Context
	rctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.trace.WroteHeaders = r.wroteHeaders
	rctx = httptrace.WithClientTrace(rctx, &r.trace)
	sent := req.WithContext(rctx)
	if sent.Body == http.NoBody {
		// A CONNECT: quic-go sends any non-nil body from a goroutine of
		// its own; a nil one just ends the stream after the headers.
		sent.Body = nil
	}
	rsp, err := h.cc.RoundTrip(sent)
	if err != nil {
		r.detach()
		if !r.wrote.Load() && h.c.Err() == nil {
			// A GOAWAY: the stream may or may not exist, so the count is
			// unknown; no new streams go on this connection anyway.
			h.credit.StopNew()
		}
		h.credit.StreamEnded()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("mux: http3 request: %w", err)
	}
	rsp.Request = req
	r.body = rsp.Body
	rsp.Body = r
	return rsp, nil
}

// h3Request is one roundTripBody in flight; it is also its response's Body,
// so that the stream's credit returns once that body ends.
type h3Request struct {
	credit *quicmux.H3Credit
	ctx    context.Context // the caller's
	// cancel ends the context quic-go sees.
	cancel context.CancelFunc
	trace  httptrace.ClientTrace
	wrote  atomic.Bool
	mu     sync.Mutex
	// stop unhooks cancel from ctx; set once the headers went out.
	stop func() bool
	body io.ReadCloser
	once sync.Once
}

func (r *h3Request) wroteHeaders() {
	r.wrote.Store(true)
	r.mu.Lock()
	r.stop = context.AfterFunc(r.ctx, r.cancel)
	r.mu.Unlock()
}

// detach unhooks and cancels the context quic-go saw.
func (r *h3Request) detach() {
	r.mu.Lock()
	if r.stop != nil {
		r.stop()
	}
	r.mu.Unlock()
	r.cancel()
}

// done runs once, when the response body ends.
func (r *h3Request) done() {
	r.detach()
	r.credit.StreamEnded()
}

func (r *h3Request) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if err != nil {
		r.once.Do(r.done)
	}
	return n, err
}

func (r *h3Request) Close() error {
	err := r.body.Close()
	r.once.Do(r.done)
	return err
}

// Close closes the HTTP/3 session and its connection.
func (h *Client) Close() error { return h.c.Close() }

// validRequest rejects what quic-go would fail to encode after opening the
// stream (see RoundTrip).
func validRequest(req *http.Request) error {
	if req.URL == nil {
		return errors.New("mux: http3 request without URL")
	}
	if req.Method != "" && !validMethod(req.Method) {
		return fmt.Errorf("mux: invalid http method %q", req.Method)
	}
	for _, hdr := range []http.Header{req.Header, req.Trailer} {
		for k, vv := range hdr {
			if !httpguts.ValidHeaderFieldName(k) {
				return fmt.Errorf("mux: invalid http header field name %q", k)
			}
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldValue(v) {
					return fmt.Errorf("mux: invalid http header field value for %q", k)
				}
			}
		}
	}
	return nil
}

func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}
