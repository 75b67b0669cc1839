package h3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"

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
// quic-go's ClientConn does not tell whether a failed request opened its
// stream; the credit count depends on knowing it. So the request's context
// reaches quic-go only once the request headers were written (the stream
// exists then), and header fields are validated before anything is sent,
// so that the only failures before that point are a dead connection or a
// GOAWAY (RFC 9114 section 5.2), which end the connection's use anyway.
func (h *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := validRequest(req); err != nil {
		return nil, err
	}
	ctx := req.Context()
	if err := h.credit.Reserve(ctx); err != nil {
		return nil, err
	}
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
		// quic-go sends any non-nil body from a goroutine of its own
		// with a fresh 8 KiB copy buffer; a nil one just ends the
		// stream after the headers.
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

// h3Request is one RoundTrip in flight; it is also its response's Body, so
// that the stream's credit returns once that body ends.
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
