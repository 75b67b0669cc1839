// x/net/http2's client is deprecated in favour of net/http's ClientConn,
// which exposes neither PING, nor a graceful GOAWAY shutdown, nor the
// errors that tell an unprocessed request: see the package doc.
//
//lint:file-ignore SA1019 the x/net/http2 client is the one with PING, GOAWAY and the peer's stream limit

package httpmux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/internal/shutdown"
)

// Proto is the HTTP version a Conn speaks.
type Proto uint8

const (
	// HTTP2 is HTTP/2 (RFC 9113): ALPN h2 over TLS, prior knowledge in
	// cleartext.
	HTTP2 Proto = iota + 1
	// HTTP1 is HTTP/1.1 (RFC 9112): one request at a time.
	HTTP1
)

var (
	// ErrRejected wraps the error of a request the server did not process
	// (HTTP/2 GOAWAY below its stream or REFUSED_STREAM): it may be sent
	// again on another connection whatever its method (RFC 9113 section
	// 8.7).
	ErrRejected = errors.New("httpmux: request not processed by the server")
	// ErrALPN is a TLS handshake in which the server did not choose the
	// protocol asked for (RFC 7301; RFC 9113 section 3.2).
	ErrALPN = errors.New("httpmux: server did not negotiate the protocol")
	// ErrNoStreams is returned by OpenStream: an HTTP connection carries
	// requests (RoundTrip), not raw streams.
	ErrNoStreams = errors.New("httpmux: no raw streams on an HTTP connection; use RoundTrip")
)

// Options configure Dial.
type Options struct {
	Proto Proto
	// TLS, when set, runs the connection over TLS with it (ServerName,
	// RootCAs, InsecureSkipVerify, ClientSessionCache for resumption;
	// NextProtos is set by Dial). Nil is cleartext.
	TLS *tls.Config
}

// Conn is one HTTP/2 or HTTP/1.1 client connection. Its methods are safe for
// concurrent use.
type Conn struct {
	proto  Proto
	scheme string
	sock   *sockConn
	h2     *http2.ClientConn
	h1     *h1Conn
	// used counts HTTP/2 requests from RoundTrip to their body's Close.
	used      atomic.Int64
	goingAway atomic.Bool
	watcher   atomic.Pointer[watcherRef]
	// idle is signalled (non-blocking) when a request ends, for Shutdown.
	idle chan struct{}
	// resumed: the TLS handshake resumed a session (RFC 8446 section 2.2).
	resumed bool
}

type watcherRef struct{ w mux.Watcher }

var _ mux.Conn = (*Conn)(nil)

// h2Transport makes the HTTP/2 client connections. Responses go to
// clients as they are (no transparent gzip); a request over the peer's
// stream limit waits for a slot instead of failing (the pool's credit can
// lag the client's by the moment a finished stream takes to be forgotten).
// No idle timeout or keep-alive of its own: the pool ages idle connections
// and probes them with Ping.
var h2Transport = &http2.Transport{
	DisableCompression:         true,
	StrictMaxConcurrentStreams: true,
}

// Dial speaks o.Proto on tcp, a connected TCP socket that the Conn owns
// from now on (closed on failure). ctx bounds the TLS handshake and, for
// HTTP/2, the exchange of prefaces: Dial returns once the server's SETTINGS
// (section 3.4) arrived, so AvailStreams is exact from the start.
func Dial(ctx context.Context, tcp net.Conn, o Options) (*Conn, error) {
	c := &Conn{proto: o.Proto, scheme: "http", sock: newSockConn(tcp), idle: make(chan struct{}, 1)}
	c.sock.onClose = c.dead
	var nc net.Conn = c.sock
	if o.TLS != nil {
		c.scheme = "https"
		cfg := o.TLS.Clone()
		want := "h2"
		if o.Proto == HTTP1 {
			want = "http/1.1"
		}
		cfg.NextProtos = []string{want}
		tc := tls.Client(c.sock, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			tcp.Close()
			return nil, fmt.Errorf("httpmux: tls handshake: %w", err)
		}
		// An HTTP/1.1 server may ignore ALPN; an HTTP/2 one must choose h2.
		if p := tc.ConnectionState().NegotiatedProtocol; p != want && (o.Proto == HTTP2 || p != "") {
			tcp.Close()
			return nil, fmt.Errorf("%w: %s asked, %q chosen", ErrALPN, want, p)
		}
		nc = tc
		c.resumed = tc.ConnectionState().DidResume
	}
	switch o.Proto {
	case HTTP2:
		cc, err := h2Transport.NewClientConn(nc)
		if err != nil {
			tcp.Close()
			return nil, fmt.Errorf("httpmux: http2: %w", err)
		}
		c.h2 = cc
		// The server's SETTINGS is the first frame of its preface, so once
		// our PING is answered the stream limit is known.
		if err := cc.Ping(ctx); err != nil {
			cc.Close()
			return nil, fmt.Errorf("httpmux: http2 preface: %w", err)
		}
	case HTTP1:
		c.h1 = newH1Conn(nc, c.sock, c.requestEnded)
	default:
		tcp.Close()
		return nil, fmt.Errorf("httpmux: unknown protocol %d", o.Proto)
	}
	return c, nil
}

// RoundTrip sends req on the connection and returns the response; the
// stream's credit returns when the response body is closed. The URL's
// scheme is set to the connection's (http or https, the :scheme of HTTP/2).
func (c *Conn) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.h1 != nil { // HTTP/1.1 does not send the scheme
		resp, err := c.h1.RoundTrip(req)
		if err != nil {
			return nil, fmt.Errorf("httpmux: http1: %w", err)
		}
		return resp, nil
	}
	if req.URL.Scheme != c.scheme {
		r := *req
		u := *req.URL
		u.Scheme = c.scheme
		r.URL = &u
		req = &r
	}
	c.used.Add(1)
	resp, err := c.h2.RoundTrip(req)
	if err != nil {
		c.requestEnded()
		if rejected(err) {
			return nil, fmt.Errorf("%w: %w", ErrRejected, err)
		}
		return nil, fmt.Errorf("httpmux: http2: %w", err)
	}
	resp.Body = &h2Body{ReadCloser: resp.Body, c: c}
	return resp, nil
}

// The errors x/net/http2 fails a request with when the server's GOAWAY
// came before the request's stream (or before the request got one); they
// are not exported. TestGoAwayRejected fails if they change.
const (
	errGoAwayText   = "http2: Transport received Server's graceful shutdown GOAWAY"
	errUnusableText = "http2: client conn not usable"
)

// rejected reports whether err says the server did not process the
// request: a GOAWAY whose last stream id is below the request's stream
// (RFC 9113 section 6.8), a REFUSED_STREAM reset (section 8.7), or a
// connection that had stopped taking requests before it was sent.
func rejected(err error) bool {
	var se http2.StreamError
	if errors.As(err, &se) && se.Code == http2.ErrCodeRefusedStream {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, errGoAwayText) || strings.Contains(msg, errUnusableText)
}

// h2Body returns the request's stream credit when closed.
type h2Body struct {
	io.ReadCloser
	c    *Conn
	done atomic.Bool
}

func (b *h2Body) Close() error {
	err := b.ReadCloser.Close()
	if b.done.CompareAndSwap(false, true) {
		b.c.used.Add(-1)
		b.c.requestEnded()
	}
	return err
}

// requestEnded tells the watcher that credit came back and wakes Shutdown.
func (c *Conn) requestEnded() {
	select {
	case c.idle <- struct{}{}:
	default:
	}
	if r := c.watcher.Load(); r != nil && c.sock.err() == nil {
		r.w.StreamCredit(c)
	}
}

// dead tells the watcher that the connection died (its socket closed).
func (c *Conn) dead(err error) {
	if r := c.watcher.Load(); r != nil {
		r.w.ConnDead(c, err)
	}
}

// OpenStream implements mux.Conn: always ErrNoStreams.
func (c *Conn) OpenStream(context.Context) (mux.Stream, error) { return nil, ErrNoStreams }

// AvailStreams implements mux.Conn: HTTP/2, the server's
// SETTINGS_MAX_CONCURRENT_STREAMS less the requests in flight; HTTP/1.1,
// 1 when idle.
func (c *Conn) AvailStreams() int {
	if c.goingAway.Load() || c.sock.err() != nil {
		return 0
	}
	if c.h1 != nil {
		return c.h1.Available()
	}
	st := c.h2.State()
	if st.Closed || st.Closing {
		return 0
	}
	return max(0, int(st.MaxConcurrentStreams)-int(c.used.Load()))
}

// UsedStreams implements mux.Conn: the requests in flight.
func (c *Conn) UsedStreams() int {
	if c.h1 != nil {
		return c.h1.InFlight()
	}
	return int(c.used.Load())
}

// SetWatcher implements mux.Conn.
func (c *Conn) SetWatcher(w mux.Watcher) {
	if w == nil {
		c.watcher.Store(nil)
		return
	}
	c.watcher.Store(&watcherRef{w})
}

// Ping implements mux.Conn: an HTTP/2 PING (RFC 9113 section 6.7). Its
// frame queues behind whatever the connection is sending, so on a
// connection busy with a large upload its ACK can take much longer than a
// round trip. Any progress of the socket while Ping waits proves the
// server alive as well: bytes received, or bytes written, which a TCP send
// buffer takes only as the server acknowledges and its application reads
// (a stopped or vanished server fills it within a window). Ping then
// succeeds when ctx ends. On HTTP/1.1 it returns at once whether the
// connection is open (see the package doc).
func (c *Conn) Ping(ctx context.Context) error {
	if c.h1 != nil {
		return c.Err()
	}
	start := time.Now().UnixNano()
	if err := c.h2.Ping(ctx); err != nil {
		if c.sock.err() == nil && c.sock.lastIO.Load() > start {
			return nil
		}
		return fmt.Errorf("httpmux: ping: %w", err)
	}
	return nil
}

// Alive implements mux.Conn: open, and (HTTP/2) no GOAWAY either way.
func (c *Conn) Alive() bool {
	if c.goingAway.Load() || c.sock.err() != nil {
		return false
	}
	if c.h1 != nil {
		return c.h1.Err() == nil
	}
	st := c.h2.State()
	return !st.Closed && !st.Closing
}

// Done implements mux.Conn: closed once the socket is.
func (c *Conn) Done() <-chan struct{} { return c.sock.done }

// Err implements mux.Conn.
func (c *Conn) Err() error { return c.sock.err() }

// Shutdown implements mux.Conn: HTTP/2 sends a GOAWAY (section 6.8) and
// closes once its streams are done; HTTP/1.1 closes after the request in
// flight. When ctx ends first the connection closes at once.
func (c *Conn) Shutdown(ctx context.Context) error {
	c.goingAway.Store(true)
	if c.h2 != nil {
		err := c.h2.Shutdown(ctx)
		if err != nil {
			c.h2.Close()
		}
		return err
	}
	var idle <-chan struct{}
	if c.h1.InFlight() > 0 {
		ch := make(chan struct{})
		go func() { // ends with the request in flight or ctx
			defer close(ch)
			for c.h1.InFlight() > 0 && c.h1.Err() == nil {
				select {
				case <-c.idle:
				case <-ctx.Done():
					return
				}
			}
		}()
		idle = ch
	}
	return shutdown.Finish(ctx, idle, func(error) { c.h1.Close() })
}

// Close implements mux.Conn: at once; requests in flight fail.
func (c *Conn) Close() error {
	c.goingAway.Store(true)
	if c.h2 != nil {
		return c.h2.Close()
	}
	return c.h1.Close()
}

// Kind implements mux.Conn.
func (c *Conn) Kind() mux.Kind {
	if c.proto == HTTP1 {
		return mux.KindHTTP1
	}
	return mux.KindHTTP2
}

// LocalAddr implements mux.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.sock.LocalAddr() }

// RemoteAddr implements mux.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.sock.RemoteAddr() }

// Resumed reports whether the connection's TLS handshake resumed a session
// from Options.TLS's ClientSessionCache.
func (c *Conn) Resumed() bool { return c.resumed }

// Proto is the connection's HTTP version.
func (c *Conn) Proto() Proto { return c.proto }

// sockConn is the TCP socket under the client; its Close (which either
// client calls when its connection ends) is the connection's death.
type sockConn struct {
	net.Conn
	done  chan struct{}
	once  sync.Once
	cause atomic.Pointer[error] // first read error: why it ended
	// lastIO is when bytes last came in or went out (UnixNano): proof of
	// life for Ping.
	lastIO  atomic.Int64
	dieErr  atomic.Pointer[error]
	onClose func(error)
}

func newSockConn(c net.Conn) *sockConn {
	return &sockConn{Conn: c, done: make(chan struct{})}
}

func (s *sockConn) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	if n > 0 {
		s.lastIO.Store(time.Now().UnixNano())
	}
	if err != nil {
		s.cause.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (s *sockConn) Write(p []byte) (int, error) {
	n, err := s.Conn.Write(p)
	if n > 0 {
		s.lastIO.Store(time.Now().UnixNano())
	}
	return n, err
}

func (s *sockConn) Close() error {
	err := s.Conn.Close()
	s.once.Do(func() {
		dead := fmt.Errorf("httpmux: connection closed: %w", net.ErrClosed)
		if c := s.cause.Load(); c != nil && !errors.Is(*c, net.ErrClosed) {
			dead = fmt.Errorf("httpmux: connection closed (%w): %w", *c, net.ErrClosed)
		}
		s.dieErr.Store(&dead)
		close(s.done)
		if s.onClose != nil {
			s.onClose(dead)
		}
	})
	return err
}

// err is nil while the socket is open, else why it closed.
func (s *sockConn) err() error {
	if e := s.dieErr.Load(); e != nil {
		return *e
	}
	return nil
}
