package muxtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/xdpnet/xdpnet/mux"
)

// Options configures a fake Conn.
type Options struct {
	// Kind is reported by Conn.Kind; zero means mux.KindQUIC.
	Kind mux.Kind
	// MaxStreams is the initial cumulative stream limit granted by the peer
	// (like QUIC's initial_max_streams_bidi, RFC 9000 section 4.6): the
	// number of streams that can be opened before the peer grants more.
	MaxStreams int
	// AutoCredit makes the fake peer raise the limit by one whenever a
	// stream finishes, as a QUIC server does by sending MAX_STREAMS and a
	// an HTTP/2 server does by construction. Without it credit comes only
	// from Grant.
	AutoCredit bool
	// Local and Remote are the socket addresses; zero values give loopback.
	Local, Remote netip.AddrPort
	// Serve, when set, makes streams carry data: each OpenStream connects
	// the Stream to one end of a net.Pipe and runs Serve on the other end in
	// a new goroutine (the fake backend). Without it writes are discarded
	// and reads return io.EOF.
	Serve func(peer net.Conn)
	// RecycleStreams reuses finished Stream objects so that OpenStream does
	// not allocate (for benchmarks of callers); a Stream must then not be
	// used after Close. Ignored when Serve is set.
	RecycleStreams bool
}

// Conn is a fake mux.Conn. Its methods are safe for concurrent use. Watcher
// callbacks are made after the fake's lock is released, on the goroutine
// that caused the change (Grant, Kill, a Stream's Close), which is what the
// mux.Watcher contract allows.
type Conn struct {
	opts  Options
	laddr net.Addr
	raddr net.Addr
	done  chan struct{}

	// mu guards the fields below.
	mu       sync.Mutex
	limit    int // cumulative streams the peer allows
	opened   int // cumulative streams opened
	finished int // cumulative streams finished in both directions
	nextID   uint64
	watcher  mux.Watcher
	shutdown bool
	dead     bool
	err      error
	credit   chan struct{} // made by a waiter, closed when credit rises or the conn dies
	idle     chan struct{} // made by a waiter, closed when a stream finishes
	pingErr  error
	pingHook func(ctx context.Context) error
	pings    int
	free     []*Stream
}

var _ mux.Conn = (*Conn)(nil)

// NewConn returns a live fake connection.
func NewConn(opts Options) *Conn {
	if opts.Kind == 0 {
		opts.Kind = mux.KindQUIC
	}
	if !opts.Local.IsValid() {
		opts.Local = netip.MustParseAddrPort("127.0.0.1:40000")
	}
	if !opts.Remote.IsValid() {
		opts.Remote = netip.MustParseAddrPort("127.0.0.1:443")
	}
	return &Conn{
		opts:  opts,
		laddr: net.UDPAddrFromAddrPort(opts.Local),
		raddr: net.UDPAddrFromAddrPort(opts.Remote),
		done:  make(chan struct{}),
		limit: opts.MaxStreams,
	}
}

// OpenStream implements mux.Conn.
func (c *Conn) OpenStream(ctx context.Context) (mux.Stream, error) {
	for {
		c.mu.Lock()
		switch {
		case c.dead:
			err := c.err
			c.mu.Unlock()
			return nil, err
		case c.shutdown:
			c.mu.Unlock()
			return nil, mux.ErrGoingAway
		case c.opened < c.limit:
			c.opened++
			c.nextID += 4 // client-initiated bidirectional ids: 0, 4, 8... (RFC 9000 section 2.1)
			s := c.newStreamLocked(c.nextID - 4)
			c.mu.Unlock()
			if c.opts.Serve != nil {
				a, b := net.Pipe()
				s.pipe = a
				go c.opts.Serve(b)
			}
			return s, nil
		}
		if c.credit == nil {
			c.credit = make(chan struct{})
		}
		wait := c.credit
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", mux.ErrNoCredit, ctx.Err())
		}
	}
}

func (c *Conn) newStreamLocked(id uint64) *Stream {
	var s *Stream
	if n := len(c.free); n > 0 && c.opts.Serve == nil {
		s = c.free[n-1]
		c.free = c.free[:n-1]
		*s = Stream{}
	} else {
		s = new(Stream)
	}
	s.c, s.id = c, id
	return s
}

// AvailStreams implements mux.Conn.
func (c *Conn) AvailStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead || c.shutdown {
		return 0
	}
	return c.limit - c.opened
}

// UsedStreams implements mux.Conn.
func (c *Conn) UsedStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened - c.finished
}

// SetWatcher implements mux.Conn.
func (c *Conn) SetWatcher(w mux.Watcher) {
	c.mu.Lock()
	c.watcher = w
	c.mu.Unlock()
}

// Ping implements mux.Conn: it returns the scripted result (SetPing,
// SetPingHook), or the connection's error once it is dead.
func (c *Conn) Ping(ctx context.Context) error {
	c.mu.Lock()
	c.pings++
	hook, err, dead := c.pingHook, c.pingErr, c.dead
	if dead {
		err = c.err
	}
	c.mu.Unlock()
	if dead {
		return err
	}
	if hook != nil {
		return hook(ctx)
	}
	return err
}

// Alive implements mux.Conn.
func (c *Conn) Alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.dead && !c.shutdown
}

// Done implements mux.Conn.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err implements mux.Conn.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Shutdown implements mux.Conn: no new streams; it waits for open streams to
// finish or ctx to end, then closes.
func (c *Conn) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return nil
	}
	c.shutdown = true
	c.wakeCreditLocked()
	c.mu.Unlock()
	for {
		c.mu.Lock()
		busy := c.opened - c.finished
		if c.idle == nil {
			c.idle = make(chan struct{})
		}
		idle := c.idle
		c.mu.Unlock()
		if busy == 0 {
			c.kill(net.ErrClosed)
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			c.kill(net.ErrClosed)
			return ctx.Err()
		}
	}
}

// Close implements mux.Conn.
func (c *Conn) Close() error {
	c.kill(net.ErrClosed)
	return nil
}

// Kind implements mux.Conn.
func (c *Conn) Kind() mux.Kind { return c.opts.Kind }

// LocalAddr implements mux.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr implements mux.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// Kill makes the connection die with err (a peer reset, an idle timeout): it
// is what a real mux does when the transport fails. The watcher is told.
func (c *Conn) Kill(err error) { c.kill(err) }

func (c *Conn) kill(err error) {
	if err == nil {
		err = net.ErrClosed
	}
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead, c.err = true, err
	close(c.done)
	c.wakeCreditLocked()
	w := c.watcher
	c.mu.Unlock()
	if w != nil {
		w.ConnDead(c, err)
	}
}

// Grant raises the peer's cumulative stream limit by n, as a MAX_STREAMS
// frame would (RFC 9000 section 19.11), and tells the watcher.
func (c *Conn) Grant(n int) {
	c.mu.Lock()
	if c.dead || n <= 0 {
		c.mu.Unlock()
		return
	}
	c.limit += n
	c.wakeCreditLocked()
	w := c.watcher
	c.mu.Unlock()
	if w != nil {
		w.StreamCredit(c)
	}
}

func (c *Conn) wakeCreditLocked() {
	if c.credit != nil {
		close(c.credit)
		c.credit = nil
	}
}

// SetPing scripts the result of later Pings (nil: acknowledged).
func (c *Conn) SetPing(err error) {
	c.mu.Lock()
	c.pingErr = err
	c.mu.Unlock()
}

// SetPingHook makes later Pings call fn (to block, count or fail them).
func (c *Conn) SetPingHook(fn func(ctx context.Context) error) {
	c.mu.Lock()
	c.pingHook = fn
	c.mu.Unlock()
}

// Pings is the number of Ping calls so far.
func (c *Conn) Pings() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pings
}

// Opened is the number of streams opened over the connection's life.
func (c *Conn) Opened() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened
}

// IsShutdown reports whether Shutdown was called (the graceful close began).
func (c *Conn) IsShutdown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shutdown
}

// Dead reports whether the connection is closed or failed.
func (c *Conn) Dead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// Watcher returns the registered watcher (nil if none).
func (c *Conn) Watcher() mux.Watcher {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watcher
}

func (c *Conn) finish(s *Stream) {
	c.mu.Lock()
	c.finished++
	credit := false
	if c.opts.AutoCredit && !c.dead && !c.shutdown {
		c.limit++
		credit = true
		c.wakeCreditLocked()
	}
	if c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	if c.opts.RecycleStreams && c.opts.Serve == nil {
		c.free = append(c.free, s)
	}
	w := c.watcher
	c.mu.Unlock()
	if credit && w != nil {
		w.StreamCredit(c)
	}
}

// Stream is a fake mux.Stream. Without Options.Serve, writes are discarded
// and reads return io.EOF.
type Stream struct {
	c    *Conn
	id   uint64
	pipe net.Conn

	// mu guards the fields below.
	mu       sync.Mutex
	wrClosed bool
	closed   bool
}

var _ mux.Stream = (*Stream)(nil)

// ErrStreamClosed is returned by I/O on a closed fake Stream; it wraps
// net.ErrClosed.
var ErrStreamClosed = fmt.Errorf("muxtest: stream closed: %w", net.ErrClosed)

// Read implements net.Conn.
func (s *Stream) Read(b []byte) (int, error) {
	if s.pipe != nil {
		return s.pipe.Read(b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrStreamClosed
	}
	return 0, io.EOF
}

// Write implements net.Conn.
func (s *Stream) Write(b []byte) (int, error) {
	s.mu.Lock()
	bad := s.closed || s.wrClosed
	s.mu.Unlock()
	if bad {
		return 0, ErrStreamClosed
	}
	if s.pipe != nil {
		return s.pipe.Write(b)
	}
	return len(b), nil
}

// CloseWrite implements mux.Stream.
func (s *Stream) CloseWrite() error {
	s.mu.Lock()
	s.wrClosed = true
	s.mu.Unlock()
	// net.Pipe has no half-close: with Serve the backend sees EOF only on Close.
	return nil
}

// Close implements net.Conn: both directions end and the stream's credit
// returns to the connection. A second Close returns ErrStreamClosed.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrStreamClosed
	}
	s.closed = true
	s.mu.Unlock()
	if s.pipe != nil {
		s.pipe.Close()
	}
	s.c.finish(s)
	return nil
}

// Reset implements mux.Stream: as Close, and idempotent (a fake has no
// wire to tell finished from cut).
func (s *Stream) Reset() error {
	if err := s.Close(); err != nil && !errors.Is(err, ErrStreamClosed) {
		return err
	}
	return nil
}

// ID implements mux.Stream.
func (s *Stream) ID() uint64 { return s.id }

// LocalAddr implements net.Conn.
func (s *Stream) LocalAddr() net.Addr { return s.c.laddr }

// RemoteAddr implements net.Conn.
func (s *Stream) RemoteAddr() net.Addr { return s.c.raddr }

// SetDeadline implements net.Conn.
func (s *Stream) SetDeadline(t time.Time) error {
	if s.pipe != nil {
		return s.pipe.SetDeadline(t)
	}
	return nil
}

// SetReadDeadline implements net.Conn.
func (s *Stream) SetReadDeadline(t time.Time) error {
	if s.pipe != nil {
		return s.pipe.SetReadDeadline(t)
	}
	return nil
}

// SetWriteDeadline implements net.Conn.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	if s.pipe != nil {
		return s.pipe.SetWriteDeadline(t)
	}
	return nil
}

// ErrDialRefused is a convenient scripted dial failure.
var ErrDialRefused = errors.New("muxtest: dial refused")
