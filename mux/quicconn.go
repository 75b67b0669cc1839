package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// QUICConn is a QUIC connection (RFC 9000) behind the Conn interface, client
// or server side.
//
// Stream credit is exact. quic-go keeps the peer's stream limit private, so
// QUICConn learns it from quic-go's event stream: the peer's
// initial_max_streams_bidi transport parameter (RFC 9000 section 18.2) and
// every MAX_STREAMS frame (section 19.11), which quic-go reports after it
// applied them. Every bidirectional stream this side opens goes through
// OpenStream (or HTTP3Client), which takes one unit of credit under a mutex
// before quic-go opens the stream, so AvailStreams = limit - opened is never
// more than quic-go would allow and OpenStream never meets quic-go's
// StreamLimitReachedError. Opening streams on the quic.Conn returned by
// QUIC() bypasses this accounting.
type QUICConn struct {
	isClient bool
	qc       *quic.Conn
	// noError is the application error code meaning "no error" for the
	// negotiated ALPN: H3_NO_ERROR (RFC 9114 section 8.1) or 0.
	noError quic.ApplicationErrorCode
	// owned is the transport made by DialQUIC, closed when the connection
	// dies; nil for connections of a shared transport or a listener.
	owned   *QUICTransport
	watcher atomic.Pointer[watcherRef]
	done    chan struct{}
	// started is set once the handshake completed and start ran: events
	// before that only set the initial limit.
	started atomic.Bool

	// pings and pingActive are fed by the event recorder (see Ping).
	pingActive atomic.Int32
	pingMu     sync.Mutex
	pings      []*pendingPing

	mu sync.Mutex
	// limit is the peer's cumulative limit on bidirectional streams this
	// side may open; opened counts those opened (or reserved) so far.
	limit, opened int64
	// used counts streams opened here and not finished in both directions;
	// accepted the same for streams the peer opened.
	used, accepted int
	goingAway      bool
	err            error
	// credit is closed (and replaced) whenever limit rises or the
	// connection dies, to wake OpenStream callers waiting for credit.
	credit chan struct{}
	// idle is non-nil during Shutdown and closed when the last stream ends.
	idle chan struct{}
}

var _ Conn = (*QUICConn)(nil)

type watcherRef struct{ w Watcher }

// ErrStreamLimit reports that the peer let this side open more streams than
// its limit allowed, or the reverse: a broken accounting invariant, never
// expected. It is returned instead of quic-go's StreamLimitReachedError.
var ErrStreamLimit = errors.New("mux: stream credit accounting out of step with quic-go")

func newQUICConn(isClient bool) *QUICConn {
	return &QUICConn{
		isClient: isClient,
		done:     make(chan struct{}),
		credit:   make(chan struct{}),
	}
}

// start binds the handshaken connection. It runs once, before c is handed out.
func (c *QUICConn) start(qc *quic.Conn) {
	c.qc = qc
	alpn := qc.ConnectionState().TLS.NegotiatedProtocol
	if alpn == ALPNH3 {
		c.noError = 0x100
	}
	c.started.Store(true)
	context.AfterFunc(qc.Context(), c.die)
	if alpn != ALPNH3 {
		// HTTP/3 handles its own unidirectional streams; on raw
		// connections they only carry the peer's pings.
		go c.discardUniStreams()
	}
}

// discardUniStreams drains the peer's unidirectional streams (its pings) so
// their credit returns to the peer. It ends when the connection dies.
func (c *QUICConn) discardUniStreams() {
	for {
		s, err := c.qc.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		s.CancelRead(quic.StreamErrorCode(c.noError))
	}
}

// die runs once when quic-go closed the connection, for whatever reason.
func (c *QUICConn) die() {
	cause := context.Cause(c.qc.Context())
	err := fmt.Errorf("mux: quic connection to %s: %w", c.qc.RemoteAddr(), cause)
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	} else {
		err = c.err
	}
	close(c.credit)
	c.credit = make(chan struct{})
	if c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.mu.Unlock()
	close(c.done)
	if c.owned != nil {
		c.owned.Close()
	}
	c.pingMu.Lock()
	for _, p := range c.pings {
		p.finish()
	}
	c.pings = nil
	c.pingActive.Store(0)
	c.pingMu.Unlock()
	if w := c.watcher.Load(); w != nil {
		w.w.ConnDead(c, err)
	}
}

// raiseLimit records the peer's new cumulative stream limit.
func (c *QUICConn) raiseLimit(n int64) {
	c.mu.Lock()
	if n <= c.limit || c.err != nil {
		c.mu.Unlock()
		return
	}
	c.limit = n
	close(c.credit)
	c.credit = make(chan struct{})
	notify := !c.goingAway
	c.mu.Unlock()
	if notify && c.started.Load() {
		if w := c.watcher.Load(); w != nil {
			w.w.StreamCredit(c)
		}
	}
}

// reserve takes one unit of stream credit, waiting for the peer to grant
// more until ctx ends.
func (c *QUICConn) reserve(ctx context.Context) error {
	for {
		c.mu.Lock()
		switch {
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return err
		case c.goingAway:
			c.mu.Unlock()
			return ErrGoingAway
		case c.opened < c.limit:
			c.opened++
			c.used++
			c.mu.Unlock()
			return nil
		}
		wake := c.credit
		c.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNoCredit, context.Cause(ctx))
		}
	}
}

// unreserve gives back a unit of credit that reserve took but quic-go did
// not use (the open failed).
func (c *QUICConn) unreserve() {
	c.mu.Lock()
	c.opened--
	notify := c.opened+1 == c.limit && c.err == nil && !c.goingAway
	c.streamEndedLocked(true)
	c.mu.Unlock()
	if notify {
		if w := c.watcher.Load(); w != nil {
			w.w.StreamCredit(c)
		}
	}
}

// streamEndedLocked counts a finished stream; c.mu must be held.
func (c *QUICConn) streamEndedLocked(local bool) {
	if local {
		c.used--
	} else {
		c.accepted--
	}
	if c.idle != nil && c.used+c.accepted == 0 {
		close(c.idle)
		c.idle = nil
	}
}

func (c *QUICConn) streamEnded(local bool) {
	c.mu.Lock()
	c.streamEndedLocked(local)
	c.mu.Unlock()
}

// OpenStream opens a bidirectional stream; see Conn.
func (c *QUICConn) OpenStream(ctx context.Context) (Stream, error) {
	if err := c.reserve(ctx); err != nil {
		return nil, err
	}
	// With credit reserved quic-go has room: OpenStreamSync returns at once.
	// It only waits when our event arrived before quic-go applied the
	// frame, which it never does (events are recorded after handling).
	s, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		c.unreserve()
		var limitErr quic.StreamLimitReachedError
		if errors.As(err, &limitErr) {
			return nil, fmt.Errorf("%w: %w", ErrStreamLimit, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoCredit, context.Cause(ctx))
		}
		return nil, fmt.Errorf("mux: open stream: %w", err)
	}
	return &quicStream{s: s, c: c, local: true}, nil
}

// AcceptStream waits for the peer to open a bidirectional stream (the
// server side of a raw-ALPN connection).
func (c *QUICConn) AcceptStream(ctx context.Context) (Stream, error) {
	s, err := c.qc.AcceptStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("mux: accept stream: %w", err)
	}
	c.mu.Lock()
	c.accepted++
	c.mu.Unlock()
	return &quicStream{s: s, c: c}, nil
}

// AvailStreams is the number of streams OpenStream opens without waiting.
func (c *QUICConn) AvailStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.goingAway {
		return 0
	}
	return int(c.limit - c.opened)
}

// UsedStreams is the number of streams opened here and not finished.
func (c *QUICConn) UsedStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// SetWatcher registers w (nil removes it).
func (c *QUICConn) SetWatcher(w Watcher) {
	if w == nil {
		c.watcher.Store(nil)
		return
	}
	c.watcher.Store(&watcherRef{w})
}

// Alive reports whether new streams can be opened.
func (c *QUICConn) Alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && !c.goingAway
}

// Done is closed when the connection is dead.
func (c *QUICConn) Done() <-chan struct{} { return c.done }

// Err is why the connection died, nil while it lives.
func (c *QUICConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Shutdown stops new streams and closes the connection once the open ones
// (both those opened here and those the peer opened) have finished, or hard
// when ctx ends first.
func (c *QUICConn) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.goingAway = true
	if c.err != nil {
		c.mu.Unlock()
		return nil
	}
	var idle chan struct{}
	if c.used+c.accepted > 0 {
		if c.idle == nil {
			c.idle = make(chan struct{})
		}
		idle = c.idle
	}
	c.mu.Unlock()
	return finishShutdown(ctx, idle, c.closeWith)
}

// Close closes the connection at once (a CONNECTION_CLOSE with the ALPN's
// no-error code); open streams fail with an error wrapping net.ErrClosed.
func (c *QUICConn) Close() error {
	c.closeWith(fmt.Errorf("mux: connection closed: %w", net.ErrClosed))
	return nil
}

func (c *QUICConn) closeWith(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.qc.CloseWithError(c.noError, "")
	<-c.done
}

// Kind is KindQUIC.
func (c *QUICConn) Kind() Kind { return KindQUIC }

// LocalAddr is the local socket address.
func (c *QUICConn) LocalAddr() net.Addr { return c.qc.LocalAddr() }

// RemoteAddr is the peer's address.
func (c *QUICConn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

// ALPN is the negotiated application protocol.
func (c *QUICConn) ALPN() string { return c.qc.ConnectionState().TLS.NegotiatedProtocol }

// QUIC is the underlying quic-go connection, for serving HTTP/3 on a
// server-side connection (http3.Server.ServeQUICConn) and for statistics.
// Opening bidirectional streams on it bypasses the credit accounting. Its
// QlogTrace is QUICConn's credit tracker, which gives no recorder to
// further producers (see connTrace).
func (c *QUICConn) QUIC() *quic.Conn { return c.qc }

// quicStream is a bidirectional QUIC stream with net.Conn half-close
// semantics that tells its connection when both directions finished.
type quicStream struct {
	s     *quic.Stream
	c     *QUICConn
	local bool

	readDone, writeDone, ended atomic.Bool
}

var _ Stream = (*quicStream)(nil)

// endedErr reports whether err ends a direction: any error but a deadline.
func endedErr(err error) bool {
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

func (s *quicStream) finishRead() {
	if !s.readDone.Swap(true) && s.writeDone.Load() {
		s.end()
	}
}

func (s *quicStream) finishWrite() {
	if !s.writeDone.Swap(true) && s.readDone.Load() {
		s.end()
	}
}

func (s *quicStream) end() {
	if !s.ended.Swap(true) {
		s.c.streamEnded(s.local)
	}
}

func (s *quicStream) Read(p []byte) (int, error) {
	n, err := s.s.Read(p)
	if endedErr(err) {
		s.finishRead()
	}
	if err != nil && err != io.EOF {
		err = s.wrapErr("read", err)
	}
	return n, err
}

func (s *quicStream) Write(p []byte) (int, error) {
	n, err := s.s.Write(p)
	if endedErr(err) {
		s.finishWrite()
	}
	if err != nil {
		err = s.wrapErr("write", err)
	}
	return n, err
}

func (s *quicStream) wrapErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "quic", Source: s.c.LocalAddr(), Addr: s.c.RemoteAddr(), Err: err}
}

// CloseWrite sends FIN; reads go on.
func (s *quicStream) CloseWrite() error {
	err := s.s.Close()
	s.finishWrite()
	return err
}

// Close sends FIN after the data written and stops reading: unread data is
// discarded and the peer is asked to stop sending (STOP_SENDING, RFC 9000
// section 3.5).
func (s *quicStream) Close() error {
	err := s.s.Close()
	if !s.readDone.Load() {
		s.s.CancelRead(quic.StreamErrorCode(s.c.noError))
	}
	s.finishWrite()
	s.finishRead()
	return err
}

func (s *quicStream) ID() uint64                         { return uint64(s.s.StreamID()) }
func (s *quicStream) LocalAddr() net.Addr                { return s.c.LocalAddr() }
func (s *quicStream) RemoteAddr() net.Addr               { return s.c.RemoteAddr() }
func (s *quicStream) SetDeadline(t time.Time) error      { return s.s.SetDeadline(t) }
func (s *quicStream) SetReadDeadline(t time.Time) error  { return s.s.SetReadDeadline(t) }
func (s *quicStream) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }

// markGoingAway stops new streams without closing: the peer sent GOAWAY
// (RFC 9114 section 5.2) or the stream count became unknowable.
func (c *QUICConn) markGoingAway() {
	c.mu.Lock()
	c.goingAway = true
	c.mu.Unlock()
}
