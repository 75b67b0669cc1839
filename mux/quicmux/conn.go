package quicmux

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

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/internal/shutdown"
)

// Conn is a QUIC connection (RFC 9000) behind the Conn interface, client
// or server side.
//
// Stream credit is exact: AvailStreams never counts a stream that quic-go
// would refuse, so OpenStream never meets quic-go's StreamLimitReachedError.
// quic-go keeps the peer's stream limit (RFC 9000 section 4.6) private, and
// Conn follows it in one of two ways:
//
//   - Ready streams, for every connection but an HTTP/3 client's.
//     OpenStream takes a stream opened ahead if there is one, else asks
//     quic-go for one without waiting (OpenStream). AvailStreams opens up to
//     Config.ReadyStreams streams ahead and counts them, so it is the peer's
//     remaining credit up to ReadyStreams, and every stream it counts exists.
//     Once quic-go refuses a stream for lack of credit, a goroutine waits in
//     quic-go's OpenStreamSync, which returns when a MAX_STREAMS frame
//     (section 19.11) raised the limit, and the stream it got is the first
//     handed out after. A stream opened ahead costs memory, about 1.7 KB,
//     and nothing on the wire: the peer learns of it from its first frame.
//     All opens are serialised and streams are handed out lowest id first,
//     so the peer never opens an unused one implicitly (section 3.2).
//   - Credit events, for HTTP/3 client connections, whose request streams
//     quic-go's HTTP/3 layer opens itself. Conn installs a qlog recorder
//     and reads the peer's initial_max_streams_bidi transport parameter
//     (section 18.2) and every MAX_STREAMS frame from quic-go's events, which
//     quic-go records after it applied them; the HTTP/3 client (package h3)
//     takes one unit of credit under a mutex before each request (see
//     H3Credit). The recorder costs CPU:
//     quic-go builds an event for every packet once one is installed, which
//     is why raw connections do without (bench/mux.md).
//
// Opening streams on the quic.Conn returned by QUIC() bypasses this
// accounting: on an HTTP/3 client connection it breaks it; elsewhere it
// takes credit from the ready streams and leaves unused lower stream ids
// that the peer then opens implicitly.
type Conn struct {
	isClient bool
	qc       *quic.Conn
	alpn     string // negotiated (see start)
	// rejected0RTT: the server rejected the early data of a connection
	// from DialEarly, which is closed for it.
	rejected0RTT atomic.Bool
	// noError is the application error code meaning "no error" for the
	// negotiated ALPN: H3_NO_ERROR (RFC 9114 section 8.1) or 0.
	noError quic.ApplicationErrorCode
	// cancelCode resets a stream cut short (Stream.Reset):
	// H3_REQUEST_CANCELLED or rawCancelCode.
	cancelCode quic.ApplicationErrorCode
	watcher    atomic.Pointer[watcherRef]
	done       chan struct{}
	// started is set once the handshake completed and start ran: events
	// before that only set the initial limit.
	started atomic.Bool
	// events: credit comes from the qlog recorder (an HTTP/3 client),
	// else from ready streams.
	events bool
	// readyTarget is Config.ReadyStreams. waitOnce starts waitForCredit,
	// and exhausted wakes it.
	readyTarget int
	waitOnce    sync.Once
	exhausted   chan struct{}

	// openMu serialises opening streams ahead and handing them out, so that
	// stream ids are used in order. It is taken before mu.
	openMu sync.Mutex
	// short is set when quic-go refused a stream for lack of credit, until
	// waitForCredit got one.
	short bool

	// pings and pingActive are fed by the event recorder (see Ping).
	pingActive atomic.Int32
	pingMu     sync.Mutex
	pings      []*pendingPing

	mu sync.Mutex
	// limit is the peer's cumulative limit on bidirectional streams this
	// side may open (credit events); opened counts those opened (or
	// reserved) so far.
	limit, opened int64
	// ready are the streams quic-go opened ahead, lowest id first (ready
	// streams); they belong to the connection until reserve hands one out.
	// Appended to with openMu held.
	ready []*quic.Stream
	// used counts streams opened here and not finished in both directions;
	// accepted the same for streams the peer opened.
	used, accepted int
	goingAway      bool
	err            error
	// credit is closed (and replaced) whenever credit comes back (limit
	// rose, or waitForCredit got a stream) or the connection dies, to wake
	// OpenStream callers waiting for credit.
	credit chan struct{}
	// idle is non-nil during Shutdown and closed when the last stream ends.
	idle chan struct{}
}

var _ mux.Conn = (*Conn)(nil)

type watcherRef struct{ w mux.Watcher }

// errStreamLimit reports that quic-go refused a stream that the credit
// events said the peer allowed: a broken accounting invariant, never
// expected. It is returned instead of quic-go's StreamLimitReachedError.
var errStreamLimit = errors.New("mux: stream credit accounting out of step with quic-go")

func newConn(isClient, events bool, cfg Config) *Conn {
	return &Conn{
		isClient:    isClient,
		events:      events,
		readyTarget: cmp.Or(cfg.ReadyStreams, defaultReadyStreams),
		exhausted:   make(chan struct{}, 1),
		done:        make(chan struct{}),
		credit:      make(chan struct{}),
	}
}

// start binds the connection. It runs once, before c is handed out. alpn
// is the negotiated protocol, or "" to read it from the handshake, which
// then must have completed: crypto/tls's ConnectionState blocks while the
// handshake runs, so an early client connection (DialEarly) passes the one
// ALPN it offered.
func (c *Conn) start(qc *quic.Conn, alpn string) {
	c.qc = qc
	if alpn == "" {
		alpn = qc.ConnectionState().TLS.NegotiatedProtocol
	}
	c.alpn = alpn
	if alpn == ALPNH3 {
		c.noError, c.cancelCode = 0x100, 0x10c
	} else {
		c.cancelCode = rawCancelCode
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
func (c *Conn) die() {
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
func (c *Conn) raiseLimit(n int64) {
	c.mu.Lock()
	if n <= c.limit || c.err != nil {
		c.mu.Unlock()
		return
	}
	c.limit = n
	c.creditRaisedUnlock()
}

// creditRaisedUnlock wakes credit waiters and the watcher after credit
// came back; it releases c.mu, which the caller holds.
func (c *Conn) creditRaisedUnlock() {
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

// usableLocked is why no stream can be opened now, or nil; c.mu is held.
func (c *Conn) usableLocked() error {
	switch {
	case c.err != nil:
		return c.err
	case c.goingAway:
		return mux.ErrGoingAway
	}
	return nil
}

// topUpLocked asks quic-go, without waiting, for streams until target are
// ready, unless the credit ran out or the connection takes no new streams.
// When quic-go refuses one for lack of credit it marks the connection short
// and wakes waitForCredit; it stops at any other error too (the connection
// is closing). c.openMu is held.
func (c *Conn) topUpLocked(target int) {
	c.mu.Lock()
	need := target - len(c.ready)
	if c.usableLocked() != nil {
		need = 0
	}
	c.mu.Unlock()
	if c.short {
		return
	}
	for range need {
		s, err := c.qc.OpenStream()
		if err != nil {
			var limitErr *quic.StreamLimitReachedError
			if errors.As(err, &limitErr) {
				c.short = true
				c.waitOnce.Do(func() { go c.waitForCredit() })
				select {
				case c.exhausted <- struct{}{}:
				default: // waitForCredit is awake already
				}
			}
			return
		}
		c.mu.Lock()
		if c.err == nil {
			c.ready = append(c.ready, s)
		}
		c.mu.Unlock()
	}
}

// waitForCredit runs once the peer's credit first ran out, until the
// connection dies: each time it ran out, it waits in quic-go for a
// MAX_STREAMS frame and hands the stream that frame allowed to c.ready.
func (c *Conn) waitForCredit() {
	for {
		select {
		case <-c.exhausted:
		case <-c.done:
			return
		}
		s, err := c.qc.OpenStreamSync(c.qc.Context())
		if err != nil {
			return
		}
		c.openMu.Lock()
		c.short = false
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			c.openMu.Unlock()
			return
		}
		c.ready = append(c.ready, s)
		c.openMu.Unlock()
		c.creditRaisedUnlock()
	}
}

// reserve takes one unit of stream credit, waiting for the peer to grant
// more until ctx ends. With ready streams it returns the stream that credit
// opened, which the caller owns; with credit events it returns nil and the
// caller opens the stream.
func (c *Conn) reserve(ctx context.Context) (*quic.Stream, error) {
	for {
		var s *quic.Stream
		var wake chan struct{}
		var err error
		if c.events {
			wake, err = c.takeCredit()
		} else {
			s, wake, err = c.takeReady()
		}
		if wake == nil || err != nil {
			return s, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", mux.ErrNoCredit, context.Cause(ctx))
		}
	}
}

// takeCredit takes a unit of credit (credit events), or returns the channel
// closed when more comes.
func (c *Conn) takeCredit() (wake chan struct{}, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usableLocked(); err != nil {
		return nil, err
	}
	if c.opened < c.limit {
		c.opened++
		c.used++
		return nil, nil
	}
	return c.credit, nil
}

// takeReady hands out the oldest ready stream, opening one if none is
// ready and the credit allows, or returns the channel closed when more
// credit comes.
func (c *Conn) takeReady() (s *quic.Stream, wake chan struct{}, err error) {
	c.openMu.Lock()
	defer c.openMu.Unlock()
	c.topUpLocked(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usableLocked(); err != nil {
		return nil, nil, err
	}
	if len(c.ready) == 0 {
		return nil, c.credit, nil
	}
	s = c.ready[0]
	n := copy(c.ready, c.ready[1:])
	c.ready[n] = nil
	c.ready = c.ready[:n]
	c.used++
	return s, nil, nil
}

// unreserve gives back a unit of credit that reserve took on a
// credit-events connection but quic-go did not use (the open failed).
func (c *Conn) unreserve() {
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
func (c *Conn) streamEndedLocked(local bool) {
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

func (c *Conn) streamEnded(local bool) {
	c.mu.Lock()
	c.streamEndedLocked(local)
	c.mu.Unlock()
}

// OpenStream opens a bidirectional stream; see Conn.
func (c *Conn) OpenStream(ctx context.Context) (mux.Stream, error) {
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
			var limitErr *quic.StreamLimitReachedError
			if errors.As(err, &limitErr) {
				return nil, fmt.Errorf("%w: %w", errStreamLimit, err)
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: %w", mux.ErrNoCredit, context.Cause(ctx))
			}
			return nil, fmt.Errorf("mux: open stream: %w", err)
		}
	}
	return &quicStream{s: s, c: c, local: true}, nil
}

// AcceptStream waits for the peer to open a bidirectional stream (the
// server side of a raw-ALPN connection).
func (c *Conn) AcceptStream(ctx context.Context) (mux.Stream, error) {
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
// With ready streams it first opens up to Config.ReadyStreams ahead (see
// Conn).
func (c *Conn) AvailStreams() int {
	if c.events {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.usableLocked() != nil {
			return 0
		}
		return int(c.limit - c.opened)
	}
	c.openMu.Lock()
	defer c.openMu.Unlock()
	c.topUpLocked(c.readyTarget)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.usableLocked() != nil {
		return 0
	}
	return len(c.ready)
}

// UsedStreams is the number of streams opened here and not finished.
func (c *Conn) UsedStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// SetWatcher registers w (nil removes it).
func (c *Conn) SetWatcher(w mux.Watcher) {
	if w == nil {
		c.watcher.Store(nil)
		return
	}
	c.watcher.Store(&watcherRef{w})
}

// Alive reports whether new streams can be opened.
func (c *Conn) Alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && !c.goingAway
}

// Done is closed when the connection is dead.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection died, nil while it lives.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Shutdown stops new streams and closes the connection once the open ones
// (both those opened here and those the peer opened) have finished, or hard
// when ctx ends first.
func (c *Conn) Shutdown(ctx context.Context) error {
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
	return shutdown.Finish(ctx, idle, c.closeWith)
}

// Close closes the connection at once (a CONNECTION_CLOSE with the ALPN's
// no-error code); open streams fail with an error wrapping net.ErrClosed.
func (c *Conn) Close() error {
	c.closeWith(fmt.Errorf("mux: connection closed: %w", net.ErrClosed))
	return nil
}

func (c *Conn) closeWith(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.qc.CloseWithError(c.noError, "")
	<-c.done
}

// Kind is KindQUIC.
func (c *Conn) Kind() mux.Kind { return mux.KindQUIC }

// LocalAddr is the local socket address.
func (c *Conn) LocalAddr() net.Addr { return c.qc.LocalAddr() }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

// ALPN is the negotiated application protocol.
func (c *Conn) ALPN() string { return c.alpn }

// QUIC is the underlying quic-go connection, for serving HTTP/3 on a
// server-side connection (http3.Server.ServeQUICConn) and for statistics.
// Opening bidirectional streams on it bypasses the credit accounting (see
// Conn). On an HTTP/3 client connection its QlogTrace is Conn's
// credit tracker, which gives no recorder to further producers (see
// connTrace); other connections have none.
func (c *Conn) QUIC() *quic.Conn { return c.qc }

// quicStream is a bidirectional QUIC stream with net.Conn half-close
// semantics that tells its connection when both directions finished.
type quicStream struct {
	s     *quic.Stream
	c     *Conn
	local bool

	readDone, writeDone, ended atomic.Bool
}

var _ mux.Stream = (*quicStream)(nil)

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

// Reset cancels both directions with the connection's cancel code
// (H3_REQUEST_CANCELLED on HTTP/3, RFC 9114 section 8.1). quic-go's
// CancelWrite and CancelRead unblock a concurrent Write and Read.
func (s *quicStream) Reset() error {
	s.s.CancelWrite(quic.StreamErrorCode(s.c.cancelCode))
	s.s.CancelRead(quic.StreamErrorCode(s.c.cancelCode))
	s.finishWrite()
	s.finishRead()
	return nil
}

func (s *quicStream) ID() uint64                         { return uint64(s.s.StreamID()) }
func (s *quicStream) LocalAddr() net.Addr                { return s.c.LocalAddr() }
func (s *quicStream) RemoteAddr() net.Addr               { return s.c.RemoteAddr() }
func (s *quicStream) SetDeadline(t time.Time) error      { return s.s.SetDeadline(t) }
func (s *quicStream) SetReadDeadline(t time.Time) error  { return s.s.SetReadDeadline(t) }
func (s *quicStream) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }

// H3Credit is the stream credit of an HTTP/3 client connection, whose
// request streams quic-go's HTTP/3 layer opens itself (see Conn: credit
// events). The HTTP/3 client (package h3) reserves a unit before each
// request and reports the request's stream ended; the unit itself comes
// back with the peer's MAX_STREAMS, as it does for OpenStream.
type H3Credit struct{ c *Conn }

// H3Credit returns c's credit if c is an HTTP/3 client connection, else nil:
// the other connections count ready streams, which quic-go's HTTP/3 layer
// would bypass.
func (c *Conn) H3Credit() *H3Credit {
	if !c.events || c.ALPN() != ALPNH3 {
		return nil
	}
	return &H3Credit{c}
}

// Reserve takes one unit of stream credit for a stream the caller is about
// to have quic-go open, waiting for the peer to grant more until ctx ends
// (then mux.ErrNoCredit wrapped with the context's error). On a dead or
// going-away connection it fails at once.
func (h *H3Credit) Reserve(ctx context.Context) error {
	_, err := h.c.reserve(ctx)
	return err
}

// StreamEnded counts a reserved stream finished in both directions, or its
// request failed: it no longer counts in UsedStreams or holds Shutdown back.
func (h *H3Credit) StreamEnded() { h.c.streamEnded(true) }

// StopNew stops new streams without closing: the peer sent GOAWAY (RFC 9114
// section 5.2) or the stream count became unknowable.
func (h *H3Credit) StopNew() {
	c := h.c
	c.mu.Lock()
	c.goingAway = true
	c.mu.Unlock()
}
