package mux

import (
	"cmp"
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
// Stream credit is exact: AvailStreams never counts a stream that quic-go
// would refuse, so OpenStream never meets quic-go's StreamLimitReachedError.
// quic-go keeps the peer's stream limit (RFC 9000 section 4.6) private, and
// QUICConn follows it in one of two ways:
//
//   - Ready streams, for every connection but an HTTP/3 client's. A filler
//     goroutine keeps up to Config.ReadyStreams bidirectional streams opened
//     ahead in quic-go, within the peer's credit, and OpenStream hands out
//     the oldest. AvailStreams counts them: it is the peer's remaining
//     credit, up to ReadyStreams, and for a few microseconds after a burst
//     of opens it can be lower while the filler catches up. When the credit
//     is used up the filler waits in quic-go's OpenStreamSync, which returns
//     once a MAX_STREAMS frame (section 19.11) raised the limit. A stream
//     opened ahead costs nothing on the wire: the peer learns of it from its
//     first frame, and streams go out lowest id first, as section 3.2 expects.
//     The filler starts at the first AvailStreams or OpenStream call.
//   - Credit events, for HTTP/3 client connections, whose request streams
//     quic-go's HTTP/3 layer opens itself. QUICConn installs a qlog recorder
//     and reads the peer's initial_max_streams_bidi transport parameter
//     (section 18.2) and every MAX_STREAMS frame from quic-go's events, which
//     quic-go records after it applied them; HTTP3Client takes one unit of
//     credit under a mutex before each request. The recorder costs CPU:
//     quic-go builds an event for every packet once one is installed, which
//     is why raw connections do without (bench/mux.md).
//
// Opening streams on the quic.Conn returned by QUIC() bypasses this
// accounting: on an HTTP/3 client connection it breaks it; elsewhere it
// takes credit from the ready streams and leaves unused lower stream ids
// that the peer then opens implicitly.
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
	// events: credit comes from the qlog recorder (an HTTP/3 client),
	// else from ready streams.
	events bool
	// readyTarget is Config.ReadyStreams; fillOnce starts the filler, and
	// refill wakes it after a ready stream was taken.
	readyTarget int
	fillOnce    sync.Once
	refill      chan struct{}

	// pings and pingActive are fed by the event recorder (see Ping).
	pingActive atomic.Int32
	pingMu     sync.Mutex
	pings      []*pendingPing

	mu sync.Mutex
	// limit is the peer's cumulative limit on bidirectional streams this
	// side may open, as far as QUICConn knows it (with ready streams: the
	// streams opened so far plus the ready ones); opened counts those
	// handed out (or reserved) so far.
	limit, opened int64
	// ready are the streams quic-go opened ahead, lowest id first; they
	// belong to the connection until reserve hands one out.
	ready []*quic.Stream
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

func newQUICConn(isClient, events bool, cfg Config) *QUICConn {
	return &QUICConn{
		isClient:    isClient,
		events:      events,
		readyTarget: cmp.Or(cfg.ReadyStreams, defaultReadyStreams),
		refill:      make(chan struct{}, 1),
		done:        make(chan struct{}),
		credit:      make(chan struct{}),
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
		go StopUniStreams(qc)
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
	// The ready streams died with the connection.
	clear(c.ready)
	c.ready = nil
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

// raiseLimit records the peer's new cumulative stream limit (credit events).
func (c *QUICConn) raiseLimit(n int64) {
	c.mu.Lock()
	if n <= c.limit || c.err != nil {
		c.mu.Unlock()
		return
	}
	c.limit = n
	c.creditRaisedUnlock()
}

// addReady hands streams the filler opened to the connection. It reports
// false, leaving them to die with it, once the connection is dead.
func (c *QUICConn) addReady(streams []*quic.Stream) bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return false
	}
	c.ready = append(c.ready, streams...)
	c.limit += int64(len(streams))
	c.creditRaisedUnlock()
	return true
}

// creditRaisedUnlock wakes credit waiters and the watcher after limit rose;
// it releases c.mu, which the caller holds.
func (c *QUICConn) creditRaisedUnlock() {
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

// startReady starts the filler of a ready-streams connection, once: it
// tops up synchronously, so that AvailStreams counts the credit at once,
// then keeps topping up in the background.
func (c *QUICConn) startReady() {
	if c.events {
		return
	}
	c.fillOnce.Do(func() {
		c.topUp()
		go c.fill()
	})
}

// topUp opens streams without waiting until readyTarget are ready or the
// peer's credit is used up; it reports whether the credit ran out first.
// Only startReady and the filler call it, one at a time, so stream ids
// enter c.ready in order.
func (c *QUICConn) topUp() (short bool) {
	c.mu.Lock()
	need := c.readyTarget - len(c.ready)
	c.mu.Unlock()
	if need <= 0 {
		return false
	}
	streams := make([]*quic.Stream, 0, need)
	for range need {
		s, err := c.qc.OpenStream()
		if err != nil {
			// StreamLimitReachedError, or the connection is closing
			// (the filler's OpenStreamSync then fails and it ends).
			short = true
			break
		}
		streams = append(streams, s)
	}
	if len(streams) > 0 {
		c.addReady(streams)
	}
	return short
}

// fill is the filler goroutine of a ready-streams connection: it tops up
// after every take and, when the peer's credit is used up, waits in quic-go
// for a MAX_STREAMS frame. It ends when the connection dies.
func (c *QUICConn) fill() {
	ctx := c.qc.Context()
	for {
		if c.topUp() {
			s, err := c.qc.OpenStreamSync(ctx)
			if err != nil || !c.addReady([]*quic.Stream{s}) {
				return
			}
			continue
		}
		select {
		case <-c.refill:
		case <-c.done:
			return
		}
	}
}

// reserve takes one unit of stream credit, waiting for the peer to grant
// more until ctx ends. On a ready-streams connection it returns the stream
// that credit opened; the caller owns it.
func (c *QUICConn) reserve(ctx context.Context) (*quic.Stream, error) {
	c.startReady()
	for {
		c.mu.Lock()
		switch {
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return nil, err
		case c.goingAway:
			c.mu.Unlock()
			return nil, ErrGoingAway
		case c.opened < c.limit:
			c.opened++
			c.used++
			var s *quic.Stream
			if !c.events {
				s = c.ready[0]
				n := copy(c.ready, c.ready[1:])
				c.ready[n] = nil
				c.ready = c.ready[:n]
			}
			c.mu.Unlock()
			if s != nil {
				select {
				case c.refill <- struct{}{}:
				default: // a wake-up is pending already
				}
			}
			return s, nil
		}
		wake := c.credit
		c.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNoCredit, context.Cause(ctx))
		}
	}
}

// unreserve gives back a unit of credit that reserve took on a
// credit-events connection but quic-go did not use (the open failed).
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
	s, err := c.reserve(ctx)
	if err != nil {
		return nil, err
	}
	if s == nil {
		// Credit events: with credit reserved quic-go has room, so
		// OpenStreamSync returns at once. It only waits if our event
		// arrived before quic-go applied the frame, which it never does
		// (events are recorded after handling).
		s, err = c.qc.OpenStreamSync(ctx)
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

// AvailStreams is the number of streams OpenStream opens without waiting
// (see QUICConn for how far that is the peer's credit).
func (c *QUICConn) AvailStreams() int {
	c.startReady()
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
