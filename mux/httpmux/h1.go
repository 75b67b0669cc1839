package httpmux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/sys/unix"
)

// h1Conn is the HTTP/1.1 client of a Conn (RFC 9112): one request at a
// time, written and answered on the caller's goroutine. net/http's
// ClientConn, which it replaces, runs a read loop and a write loop per
// connection and hands every request and response between them and the
// caller over channels: two goroutine hops, a select and their allocations
// per request, about a fifth of the gateway's CPU per proxied request in
// bench/peers' h1 load. Here only a request with a body gets a goroutine,
// which writes the body while the caller reads the response (a server may
// answer before the upload ends); the wire format is net/http's own
// (Request.Write, ReadResponse), so framing, chunked bodies, trailers and
// header validation are the same.
//
// Its buffers come from h1Buffers for each request and go back when the
// request ends with the connection open, so an idle connection holds none.
// A request that fails or a response that ends the connection leaves them
// to the collector with the connection: a body writer may still hold the
// writer then.
//
// While idle nothing reads the connection. It is checked before each
// request instead (peerLeft): a server that closed it
// meanwhile (an idle timeout, a restart, a reload) is found before
// anything is sent, so the request is not lost on it, and the caller may
// send it on another connection whatever its method.
type h1Conn struct {
	nc   net.Conn // TLS over sock, or sock
	sock *sockConn
	lr   limitReader
	// br and bw are set while a request is in flight (RoundTrip to end),
	// nil while idle.
	br *bufio.Reader
	bw *bufio.Writer
	// onEnd is told that a request ended (credit back, or the connection
	// closed).
	onEnd func()
	// raw is the kernel socket under sock, notifier the netstack one, for
	// peerLeft; nil on other sockets.
	raw      syscall.RawConn
	notifier readNotifier
	// stopIdle cancels the readability notification of the idle
	// connection (nil: none); peerSpoke is set when it fired.
	stopIdle  func()
	peerSpoke atomic.Bool

	busy   atomic.Bool
	closed atomic.Bool
}

// maxResponseHeaderBytes bounds a response's status line and header
// section, as net/http's Transport does by default.
const maxResponseHeaderBytes = 10 << 20

// max1xx bounds the informational responses before the final one, as
// net/http's Transport does.
const max1xx = 5

// maxWriteWait is how long a connection whose response is complete waits
// for the rest of its request body to go out before it is reused; past it
// the connection closes (net/http's Transport waits 50ms too).
const maxWriteWait = 50 * time.Millisecond

var (
	errH1Busy   = errors.New("a request is in flight")
	errH1Closed = fmt.Errorf("connection closed: %w", net.ErrClosed)
	errH1Peer   = fmt.Errorf("server closed the idle connection: %w", net.ErrClosed)
	errH1Switch = errors.New("unexpected 101 Switching Protocols")
	errH11xx    = errors.New("too many 1xx responses")
)

func newH1Conn(nc net.Conn, sock *sockConn, onEnd func()) *h1Conn {
	h := &h1Conn{nc: nc, sock: sock, onEnd: onEnd}
	h.lr.r = nc
	h.notifier, h.raw = socketOf(sock.Conn)
	h.watchIdle() // a connection may wait in the pool before its first request
	return h
}

// socketOf finds the socket under c, past wrappers without buffers of
// their own that say what they wrap (NetConn): a netstack one that
// notifies readability, or a kernel one; neither for others.
func socketOf(c net.Conn) (readNotifier, syscall.RawConn) {
	for {
		switch sc := c.(type) {
		case readNotifier:
			return sc, nil
		case syscall.Conn:
			raw, err := sc.SyscallConn()
			if err != nil {
				return nil, nil
			}
			return nil, raw
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, nil
		}
		c = u.NetConn()
	}
}

// readNotifier is a socket that can call fn once when it becomes readable
// (data, end of stream, reset or error) without a goroutine reading it:
// stack's netstack TCP connections.
type readNotifier interface {
	NotifyReadable(fn func()) (stop func(), ok bool)
}

// peerLeft reports whether the idle connection cannot carry a request:
// bytes the server sent unasked (a late response, a TLS alert; end closes
// a connection whose buffer holds some when its request ends), its end
// of stream or an error are waiting. On netstack the connection's
// readability notification, set when its previous request ended (idle),
// says so without a system call; on a kernel socket it looks without
// reading (MSG_PEEK) and without waiting, one system call. Other sockets
// say false: the request then finds a closed connection itself.
func (h *h1Conn) peerLeft() bool {
	if stop := h.stopIdle; stop != nil {
		h.stopIdle = nil
		stop()
		if h.peerSpoke.Load() {
			return true
		}
	}
	if h.raw == nil {
		return false
	}
	var b [1]byte
	left := false
	err := h.raw.Read(func(fd uintptr) bool {
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		left = err != unix.EAGAIN && err != unix.EINTR
		return true
	})
	return left || err != nil
}

// Available is 1 when a request may be sent.
func (h *h1Conn) Available() int {
	if h.closed.Load() || h.busy.Load() {
		return 0
	}
	return 1
}

// InFlight is 1 while a request is in flight (its response body unread).
func (h *h1Conn) InFlight() int {
	if !h.closed.Load() && h.busy.Load() {
		return 1
	}
	return 0
}

// Err is nil while the connection can carry requests.
func (h *h1Conn) Err() error {
	if h.closed.Load() {
		return errH1Closed
	}
	return nil
}

// Close closes the connection; a request in flight fails.
func (h *h1Conn) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	return h.nc.Close()
}

// RoundTrip sends req and reads its response's header section. The
// connection is busy until the response body is read to its end or
// closed; a body closed before its end closes the connection (what is
// left of it would be read as the next response). A request whose context
// ends closes the connection, which fails the request's reads and writes.
func (h *h1Conn) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := validRequest(req); err != nil {
		return nil, err
	}
	if !h.busy.CompareAndSwap(false, true) {
		return nil, errH1Busy
	}
	if h.closed.Load() {
		h.busy.Store(false)
		return nil, errH1Closed
	}
	if h.peerLeft() {
		h.Close()
		h.end()
		return nil, errH1Peer
	}
	h.br, h.bw = h1Buffers.get(&h.lr, h.nc)
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { h.Close() })
	var wrote chan error
	if req.Body == nil || req.Body == http.NoBody {
		err := req.Write(h.bw)
		if err == nil {
			err = h.bw.Flush()
		}
		if err != nil {
			return nil, h.fail(ctx, stop, err)
		}
	} else {
		// Full duplex: the body goes out while the response comes. The
		// writer ends with its write or its body, whichever fails first:
		// a closed connection fails the write at once, and the client's
		// body (net/http's server closes it when the handler returns)
		// ends a read that waits on the client. A complete response
		// waits for it (finish).
		wrote = make(chan error, 1)
		bw := h.bw
		go func() {
			err := req.Write(bw)
			if err == nil {
				err = bw.Flush()
			}
			if err != nil {
				h.Close()
			}
			wrote <- err
		}()
	}
	resp, err := h.readResponse(req)
	if err != nil {
		return nil, h.fail(ctx, stop, err)
	}
	resp.Body = &h1Body{h: h, rc: resp.Body, ctx: ctx, stop: stop, wrote: wrote, close: resp.Close}
	return resp, nil
}

// readResponse reads the final response to req, past informational ones
// (RFC 9110 section 15.2), its header section bounded.
func (h *h1Conn) readResponse(req *http.Request) (*http.Response, error) {
	trace := httptrace.ContextClientTrace(req.Context())
	for n := 0; ; n++ {
		h.lr.n = maxResponseHeaderBytes
		resp, err := http.ReadResponse(h.br, req)
		spent := h.lr.n <= 0
		h.lr.n = math.MaxInt64
		if err != nil {
			if spent {
				err = fmt.Errorf("server response headers exceeded %d bytes: %w", maxResponseHeaderBytes, err)
			}
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			// The proxy never asks for an upgrade (Upgrade is hop by hop).
			return nil, errH1Switch
		case resp.StatusCode >= 200 || resp.StatusCode < 100:
			return resp, nil
		case n >= max1xx:
			return nil, errH11xx
		}
		if trace != nil {
			if resp.StatusCode == http.StatusContinue && trace.Got100Continue != nil {
				trace.Got100Continue()
			}
			if trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
					return nil, err
				}
			}
		}
	}
}

// fail ends a request that got no response: the connection closes (what
// reached the server is unknown). A request whose context ended reports
// why.
func (h *h1Conn) fail(ctx context.Context, stop func() bool, err error) error {
	stop()
	h.Close()
	h.end()
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return err
}

// end frees the connection for its next request and says so. The buffers
// go back to the pool when the connection stays open: then the response
// was read to its end and the request's body writer is done.
func (h *h1Conn) end() {
	if h.br != nil && h.br.Buffered() > 0 {
		// Bytes past the response that nobody asked for (a server
		// out of step, or a late response): the next request would
		// read them as its answer.
		h.Close()
	}
	if h.br != nil && !h.closed.Load() {
		h1Buffers.put(h.br, h.bw)
	}
	h.br, h.bw = nil, nil
	h.watchIdle()
	h.busy.Store(false)
	h.onEnd()
}

// watchIdle has an open netstack connection watched while idle (see
// peerLeft).
func (h *h1Conn) watchIdle() {
	if h.notifier != nil && !h.closed.Load() {
		h.peerSpoke.Store(false)
		if stop, ok := h.notifier.NotifyReadable(func() { h.peerSpoke.Store(true) }); ok {
			h.stopIdle = stop
		}
	}
}

// h1Body is a response body; at its end (or Close) the connection is
// freed, or closed when it cannot carry another request.
type h1Body struct {
	h     *h1Conn
	rc    io.ReadCloser
	ctx   context.Context
	stop  func() bool
	wrote chan error // the body writer's result; nil: no body
	close bool       // the response ends the connection
	done  atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.finish(true)
	case err != nil:
		b.finish(false)
		if b.ctx.Err() != nil {
			err = context.Cause(b.ctx)
		}
	}
	return n, err
}

// Close frees the connection when the body was read to its end, else
// closes it (without draining the rest, which may never end).
func (b *h1Body) Close() error {
	b.finish(false)
	return nil
}

func (b *h1Body) finish(complete bool) {
	if b.done.Swap(true) {
		return
	}
	h := b.h
	reuse := complete && !b.close
	if !b.stop() {
		reuse = false // the context ended: AfterFunc closed the connection
	}
	if reuse && b.wrote != nil {
		select {
		case err := <-b.wrote:
			reuse = err == nil
		default:
			t := time.NewTimer(maxWriteWait)
			select {
			case err := <-b.wrote:
				reuse = err == nil
			case <-t.C:
				reuse = false
			}
			t.Stop()
		}
	}
	if !reuse {
		h.Close()
	}
	h.end()
}

// validRequest rejects header fields that would break the framing of the
// request (net/http's ClientConn checks the same).
func validRequest(req *http.Request) error {
	if req.URL == nil || req.Header == nil {
		return errors.New("request without URL or header")
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid header field value for %q", k)
			}
		}
	}
	return nil
}

// limitReader fails reads once n bytes went through (the header bound).
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("response header too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
