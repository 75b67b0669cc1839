package framed

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/internal/shutdown"
)

var errDeadline = os.ErrDeadlineExceeded

// Config configures framed virtual connections over one TCP
// connection (see wire.go for the wire format). The zero value is
// usable.
type Config struct {
	// MaxStreams is the number of concurrent streams the peer may open
	// towards this side, announced in SETTINGS; 0 means 1024.
	MaxStreams int
	// StreamWindow is each stream's receive window in bytes: the bound of its
	// receive queue; 0 means 256 KiB.
	StreamWindow int
	// MaxFrameSize is the largest frame payload accepted; a larger frame
	// drops the connection with ErrFrameTooLarge. 0 means 16 KiB.
	MaxFrameSize int
	// SendQueue is the number of frames queued for the writer; 0 means 1024.
	SendQueue int
	// DropWhenFull makes writes fail at once with ErrSendQueueFull instead of
	// waiting for room in a full send queue.
	DropWhenFull bool
	// KeepAlive sends a PING when nothing was sent for this long; 0 means
	// 10s, negative turns it off.
	KeepAlive time.Duration
	// IdleTimeout drops a connection that received nothing for this long
	// (with ErrIdleTimeout); 0 means 30s, negative turns it off.
	IdleTimeout time.Duration
	// ReconnectBackoff is the wait before the first reconnect of a
	// Dial connection; it doubles per failed attempt up to
	// MaxReconnectBackoff. 0 means 5ms and 1s.
	ReconnectBackoff    time.Duration
	MaxReconnectBackoff time.Duration
	// MaxReconnects is the number of consecutive failed dials after which a
	// Dial connection dies with ErrReconnectFailed; 0 means 10,
	// negative turns reconnecting off.
	MaxReconnects int
}

func (cfg Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.MaxStreams, 1024)
	def(&cfg.StreamWindow, 256<<10)
	def(&cfg.MaxFrameSize, 16<<10)
	def(&cfg.SendQueue, 1024)
	def(&cfg.MaxReconnects, 10)
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defDur(&cfg.KeepAlive, 10*time.Second)
	defDur(&cfg.IdleTimeout, 30*time.Second)
	defDur(&cfg.ReconnectBackoff, 5*time.Millisecond)
	defDur(&cfg.MaxReconnectBackoff, time.Second)
	return cfg
}

// ContextWriter is implemented by the streams of a Conn: a write
// that waits for flow-control window and send-queue room only until ctx
// ends (Stream.Write honours the write deadline instead).
type ContextWriter interface {
	WriteContext(ctx context.Context, p []byte) (int, error)
}

var _ ContextWriter = (*framedStream)(nil)

// DialFunc opens the TCP connection (or any reliable ordered byte stream)
// under a Conn, for example a netstack's DialTCP.
type DialFunc func(ctx context.Context) (net.Conn, error)

// Stats counts a Conn's events since it was made.
type Stats struct {
	FramesIn, FramesOut uint64
	// UnknownStream counts frames for streams that no longer exist (late
	// frames after a reset: expected in small numbers).
	UnknownStream uint64
	// ResetsSent and ResetsReceived count RESET frames.
	ResetsSent, ResetsReceived uint64
	// Dropped counts writes refused by a full send queue (DropWhenFull).
	Dropped uint64
	// Reconnects counts successful reconnects.
	Reconnects uint64
}

// Conn carries virtual connections (streams) over one TCP
// connection, after tRPC-Go's multiplexed pool but with bounded per-stream
// receive queues (flow control), a send queue that honours contexts and
// deadlines, exact stream credit, and reconnection that fails the streams
// of the lost connection with ErrConnLost.
//
// Goroutines: per TCP connection a reader (frames to streams), a writer
// (send queue to the socket) and a keep-alive timer; while reconnecting one
// redialler. All end when the connection dies.
type Conn struct {
	cfg     Config
	dial    DialFunc // nil: no reconnect
	watcher atomic.Pointer[watcherRef]
	done    chan struct{}
	accepts chan *framedStream
	// closing is cancelled by Close to stop a redial in progress.
	closing context.Context
	cancel  context.CancelFunc

	framesIn, framesOut, unknown, resetsSent, resetsRecv, dropped, reconnects atomic.Uint64

	pingMu sync.Mutex
	pings  map[uint64]chan struct{}

	mu sync.Mutex
	// sess is the current TCP connection; nil while reconnecting.
	sess *framedSession
	err  error
	// goingAway: Shutdown began here; peerGoingAway: the peer sent GOAWAY.
	goingAway, peerGoingAway bool
	credit                   chan struct{} // closed and replaced when AvailStreams may have risen
	idle                     chan struct{} // closed when the last stream ends during Shutdown
	nextID                   uint32
}

var _ mux.Conn = (*Conn)(nil)

type watcherRef struct{ w mux.Watcher }

// framedSession is one TCP connection of a Conn.
type framedSession struct {
	c    *Conn
	nc   net.Conn
	dead chan struct{} // closed when the session failed
	// data carries OPEN, DATA and FIN frames in order; ctrl the rest,
	// which must never wait behind data (a full data queue on both sides
	// would otherwise deadlock window updates).
	data   chan outFrame
	ctrlMu sync.Mutex
	ctrl   []outFrame
	ctrlCh chan struct{}

	lastRecv, lastSend atomic.Int64 // unix nanoseconds

	// Guarded by c.mu.
	ready               bool // SETTINGS received
	peerMax, peerWindow int
	peerMaxFrame        int
	streams             map[streamKey]*framedStream
	opened, accepted    int
	failErr             error
}

type streamKey struct {
	id    uint32
	local bool // opened by this side
}

// outFrame is a frame for the writer. payload is owned by the frame until
// written; buf, if set, goes back to framePool afterwards.
type outFrame struct {
	hdr     frameHeader
	payload []byte
	buf     *[]byte
	// st is the stream of a stream frame, nil for connection frames and
	// for RESETs refusing streams that were never created.
	st *framedStream
}

var framePool sync.Pool

func getFrameBuf(n int) *[]byte {
	if p, ok := framePool.Get().(*[]byte); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, max(n, 16<<10))
	return &b
}

// New runs framed virtual connections over nc, which it owns. It
// sends SETTINGS and returns at once; streams can be opened once the
// peer's SETTINGS arrived (OpenStream waits for them). A New
// connection does not reconnect; see Dial.
func New(nc net.Conn, cfg Config) *Conn {
	c := newConn(cfg, nil)
	c.mu.Lock()
	c.startSessionLocked(nc)
	c.mu.Unlock()
	return c
}

// Dial dials with dial, waits for the peer's SETTINGS until ctx ends,
// and returns a connection that redials with bounded exponential backoff
// when its TCP connection fails. Streams open at the failure end with
// ErrConnLost; OpenStream callers wait for the new connection, or fail with
// ErrReconnectFailed after cfg.MaxReconnects failed dials.
func Dial(ctx context.Context, dial DialFunc, cfg Config) (*Conn, error) {
	nc, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("mux: framed dial: %w", err)
	}
	c := newConn(cfg, dial)
	c.mu.Lock()
	s := c.startSessionLocked(nc)
	c.mu.Unlock()
	if err := c.waitReady(ctx, s); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newConn(cfg Config, dial DialFunc) *Conn {
	cfg = cfg.withDefaults()
	if cfg.MaxReconnects < 0 {
		dial = nil
	}
	closing, cancel := context.WithCancel(context.Background())
	return &Conn{
		cfg:     cfg,
		dial:    dial,
		done:    make(chan struct{}),
		accepts: make(chan *framedStream, cfg.MaxStreams),
		closing: closing,
		cancel:  cancel,
		pings:   make(map[uint64]chan struct{}),
		credit:  make(chan struct{}),
	}
}

func (c *Conn) waitReady(ctx context.Context, s *framedSession) error {
	for {
		c.mu.Lock()
		ready, err, failed, wake := s.ready, c.err, s.failErr, c.credit
		c.mu.Unlock()
		switch {
		case ready:
			return nil
		case err != nil:
			return err
		case failed != nil:
			return fmt.Errorf("mux: framed handshake: %w", failed)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("mux: framed handshake: %w", ctx.Err())
		}
	}
}

// startSessionLocked starts the goroutines of a new TCP connection; c.mu held.
func (c *Conn) startSessionLocked(nc net.Conn) *framedSession {
	s := &framedSession{
		c:       c,
		nc:      nc,
		dead:    make(chan struct{}),
		data:    make(chan outFrame, c.cfg.SendQueue),
		ctrlCh:  make(chan struct{}, 1),
		streams: make(map[streamKey]*framedStream),
	}
	now := time.Now().UnixNano()
	s.lastRecv.Store(now)
	s.lastSend.Store(now)
	c.sess = s
	settings := make([]byte, settingsLen)
	binary.BigEndian.PutUint32(settings[0:], uint32(c.cfg.MaxStreams))
	binary.BigEndian.PutUint32(settings[4:], uint32(c.cfg.StreamWindow))
	binary.BigEndian.PutUint32(settings[8:], uint32(c.cfg.MaxFrameSize))
	s.sendCtrl(outFrame{hdr: frameHeader{typ: frameSettings, length: settingsLen}, payload: settings})
	go s.readLoop()
	go s.writeLoop()
	if c.cfg.KeepAlive > 0 || c.cfg.IdleTimeout > 0 {
		go s.keepAliveLoop()
	}
	return s
}

// wakeLocked wakes OpenStream waiters; c.mu held.
func (c *Conn) wakeLocked() {
	close(c.credit)
	c.credit = make(chan struct{})
}

func (c *Conn) notifyCredit() {
	if w := c.watcher.Load(); w != nil {
		w.w.StreamCredit(c)
	}
}

// sendCtrl queues a control frame; it never blocks.
func (s *framedSession) sendCtrl(f outFrame) {
	s.ctrlMu.Lock()
	s.ctrl = append(s.ctrl, f)
	s.ctrlMu.Unlock()
	select {
	case s.ctrlCh <- struct{}{}:
	default:
	}
}

// sendData queues an OPEN, DATA or FIN frame in order, waiting for room
// until ctx or the deadline ends (or, if mayDrop, failing at once with
// DropWhenFull).
func (s *framedSession) sendData(ctx context.Context, dl <-chan struct{}, f outFrame, mayDrop bool) error {
	select {
	case s.data <- f:
		return nil
	default:
	}
	if mayDrop && s.c.cfg.DropWhenFull {
		s.c.dropped.Add(1)
		return ErrSendQueueFull
	}
	select {
	case s.data <- f:
		return nil
	case <-s.dead:
		return s.lostErr()
	case <-ctx.Done():
		return ctx.Err()
	case <-dl:
		return errDeadline
	}
}

func (s *framedSession) lostErr() error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.failErr
}

func (s *framedSession) writeLoop() {
	bw := bufio.NewWriterSize(s.nc, 64<<10)
	var hdr [frameHeaderLen]byte
	write := func(f outFrame) error {
		if st := f.st; st != nil {
			// Decisions about a stream's frames are made here, on the
			// writer goroutine, so that a RESET is its last frame on the
			// wire and a stream whose OPEN never left is not reset.
			switch f.hdr.typ {
			case frameOpen:
				if st.reset.Load() {
					st.abandon()
					return nil
				}
				st.openWritten.Store(true)
			case frameReset:
				if st.local && !st.openWritten.Load() {
					return nil // the OPEN behind it is dropped too
				}
			default:
				if st.reset.Load() {
					putBuf(f.buf)
					return nil
				}
			}
		}
		f.hdr.put(hdr[:])
		if _, err := bw.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := bw.Write(f.payload); err != nil {
			return err
		}
		putBuf(f.buf)
		s.c.framesOut.Add(1)
		return nil
	}
	for {
		s.ctrlMu.Lock()
		ctrl := s.ctrl
		s.ctrl = nil
		s.ctrlMu.Unlock()
		for _, f := range ctrl {
			if err := write(f); err != nil {
				s.fail(err)
				return
			}
		}
		select {
		case f := <-s.data:
			if err := write(f); err != nil {
				s.fail(err)
				return
			}
			continue
		default:
		}
		if len(ctrl) > 0 {
			continue
		}
		if bw.Buffered() > 0 {
			if err := bw.Flush(); err != nil {
				s.fail(err)
				return
			}
			s.lastSend.Store(time.Now().UnixNano())
		}
		select {
		case <-s.ctrlCh:
		case f := <-s.data:
			if err := write(f); err != nil {
				s.fail(err)
				return
			}
		case <-s.dead:
			return
		}
	}
}

func (s *framedSession) readLoop() {
	br := bufio.NewReaderSize(s.nc, 64<<10)
	var hdr [frameHeaderLen]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			s.fail(readErr(err))
			return
		}
		h, err := parseFrameHeader(hdr[:], s.c.cfg.MaxFrameSize)
		if err != nil {
			s.fail(err)
			return
		}
		var buf *[]byte
		var payload []byte
		if h.length > 0 {
			buf = getFrameBuf(int(h.length))
			payload = *buf
			if _, err := io.ReadFull(br, payload); err != nil {
				s.fail(readErr(err))
				return
			}
		}
		s.lastRecv.Store(time.Now().UnixNano())
		s.c.framesIn.Add(1)
		if err := s.handle(h, payload, buf); err != nil {
			s.fail(err)
			return
		}
	}
}

// readErr names a connection that ended in the middle of a frame.
func readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("mux: truncated frame: %w", err)
	}
	if err == io.EOF {
		return fmt.Errorf("mux: peer closed the connection: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// handle processes one frame. A returned error drops the connection.
// payload is owned by buf (may be nil) and passes to the stream for DATA.
func (s *framedSession) handle(h frameHeader, payload []byte, buf *[]byte) error {
	c := s.c
	switch h.typ {
	case frameSettings:
		maxStreams := int(binary.BigEndian.Uint32(payload[0:]))
		window := int(binary.BigEndian.Uint32(payload[4:]))
		maxFrame := int(binary.BigEndian.Uint32(payload[8:]))
		if window == 0 || maxFrame == 0 {
			return fmt.Errorf("%w: settings with zero window or frame size", ErrBadFrame)
		}
		c.mu.Lock()
		if s.ready {
			c.mu.Unlock()
			return fmt.Errorf("%w: second SETTINGS", ErrBadFrame)
		}
		s.ready, s.peerMax, s.peerWindow, s.peerMaxFrame = true, maxStreams, window, maxFrame
		c.wakeLocked()
		notify := c.availLocked() > 0
		c.mu.Unlock()
		if notify {
			c.notifyCredit()
		}
		return nil
	case framePing:
		s.sendCtrl(outFrame{hdr: frameHeader{typ: framePong, length: 8}, payload: payload})
		return nil
	case framePong:
		c.pingMu.Lock()
		if ch, ok := c.pings[binary.BigEndian.Uint64(payload)]; ok {
			close(ch)
			delete(c.pings, binary.BigEndian.Uint64(payload))
		}
		c.pingMu.Unlock()
		return nil
	case frameGoAway:
		c.mu.Lock()
		c.peerGoingAway = true
		c.mu.Unlock()
		return nil
	}
	c.mu.Lock()
	if s.failErr != nil {
		// Frames buffered before the failure: the streams are gone.
		err := s.failErr
		c.mu.Unlock()
		return err
	}
	if !s.ready {
		c.mu.Unlock()
		return fmt.Errorf("%w: frame before SETTINGS", ErrBadFrame)
	}
	// A frame to the opener concerns a stream this side opened.
	key := streamKey{id: h.id, local: h.toOpener}
	st := s.streams[key]
	if h.typ == frameOpen {
		if h.toOpener {
			c.mu.Unlock()
			return fmt.Errorf("%w: OPEN sent to the opener", ErrBadFrame)
		}
		if st != nil {
			// The peer reused an id it had not finished: reset the old
			// stream; the new one is refused with it.
			c.mu.Unlock()
			st.resetLocal(resetDuplicate, ErrDuplicateID)
			return nil
		}
		if s.accepted >= c.cfg.MaxStreams || c.goingAway {
			c.mu.Unlock()
			c.resetsSent.Add(1)
			s.sendCtrl(resetFrame(h.id, true, resetRefused))
			return nil
		}
		st = newFramedStream(s, h.id, false)
		s.streams[key] = st
		s.accepted++
		c.mu.Unlock()
		if len(payload) > 0 {
			st.deliver(payload, buf)
		}
		select {
		case c.accepts <- st:
		default:
			// Not possible: accepts holds MaxStreams and accepted <= MaxStreams.
			st.resetLocal(resetRefused, errors.New("mux: accept queue full"))
		}
		return nil
	}
	c.mu.Unlock()
	if st == nil {
		c.unknown.Add(1)
		return nil
	}
	switch h.typ {
	case frameData:
		st.deliver(payload, buf)
	case frameFin:
		st.recvFinFrame()
	case frameReset:
		c.resetsRecv.Add(1)
		st.recvReset(binary.BigEndian.Uint32(payload))
	case frameWindow:
		st.addWindow(int(binary.BigEndian.Uint32(payload)))
	}
	return nil
}

func resetFrame(id uint32, toOpener bool, code uint32) outFrame {
	p := make([]byte, 4)
	binary.BigEndian.PutUint32(p, code)
	return outFrame{hdr: frameHeader{typ: frameReset, toOpener: toOpener, id: id, length: 4}, payload: p}
}

func (s *framedSession) keepAliveLoop() {
	cfg := s.c.cfg
	tick := cfg.KeepAlive
	if tick <= 0 || (cfg.IdleTimeout > 0 && cfg.IdleTimeout/2 < tick) {
		tick = cfg.IdleTimeout / 2
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.dead:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		if cfg.IdleTimeout > 0 && time.Duration(now-s.lastRecv.Load()) >= cfg.IdleTimeout {
			s.fail(ErrIdleTimeout)
			return
		}
		if cfg.KeepAlive > 0 && time.Duration(now-s.lastSend.Load()) >= cfg.KeepAlive {
			s.sendCtrl(outFrame{hdr: frameHeader{typ: framePing, length: 8}, payload: make([]byte, 8)})
		}
	}
}

// fail ends the session: its streams fail with ErrConnLost wrapping err,
// and the Conn reconnects or dies.
func (s *framedSession) fail(err error) {
	c := s.c
	c.mu.Lock()
	if s.failErr != nil {
		c.mu.Unlock()
		return
	}
	if c.err != nil {
		// Closed on purpose: the streams get the connection's error.
		s.failErr = c.err
	} else {
		s.failErr = fmt.Errorf("%w: %w", ErrConnLost, err)
	}
	close(s.dead)
	s.nc.Close()
	streams := s.streams
	s.streams = nil
	s.opened, s.accepted = 0, 0
	reconnect := c.sess == s && c.err == nil && c.dial != nil && !c.goingAway && !c.peerGoingAway
	var die error
	if c.sess == s {
		c.sess = nil
		if !reconnect && c.err == nil {
			die = s.failErr
			if c.goingAway || c.peerGoingAway {
				die = fmt.Errorf("%w (%w)", mux.ErrGoingAway, err)
			}
		}
	}
	if c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.wakeLocked()
	failErr := s.failErr
	c.mu.Unlock()
	for _, st := range streams {
		st.connFailed(failErr)
	}
	if die != nil {
		c.die(die)
	}
	if reconnect {
		go c.redial(err)
	}
}

// redial reconnects with exponential backoff (the redialler goroutine).
func (c *Conn) redial(cause error) {
	backoff := c.cfg.ReconnectBackoff
	lastErr := cause
	for range c.cfg.MaxReconnects {
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-c.closing.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, c.cfg.MaxReconnectBackoff)
		nc, err := c.dial(c.closing)
		if err != nil {
			lastErr = err
			continue
		}
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			nc.Close()
			return
		}
		c.startSessionLocked(nc)
		c.mu.Unlock()
		c.reconnects.Add(1)
		return
	}
	c.die(fmt.Errorf("%w after %d attempts: %w", ErrReconnectFailed, c.cfg.MaxReconnects, lastErr))
}

// die makes the connection dead with err, once.
func (c *Conn) die(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	s := c.sess
	c.wakeLocked()
	c.mu.Unlock()
	c.cancel()
	if s != nil {
		s.fail(err)
	}
	close(c.done)
	// Streams the peer opened that nobody accepted are lost with it.
	for {
		select {
		case st := <-c.accepts:
			st.connFailed(err)
			continue
		default:
		}
		break
	}
	c.pingMu.Lock()
	for id, ch := range c.pings {
		close(ch)
		delete(c.pings, id)
	}
	c.pingMu.Unlock()
	if w := c.watcher.Load(); w != nil {
		w.w.ConnDead(c, err)
	}
}

// availLocked is AvailStreams with c.mu held.
func (c *Conn) availLocked() int {
	s := c.sess
	if c.err != nil || c.goingAway || c.peerGoingAway || s == nil || !s.ready {
		return 0
	}
	return max(0, s.peerMax-s.opened)
}

// OpenStream opens a virtual connection with the next free id.
func (c *Conn) OpenStream(ctx context.Context) (mux.Stream, error) {
	return c.open(ctx, 0, false)
}

// OpenStreamID opens a virtual connection with a caller-chosen id (a
// request id, as in tRPC). An id that is in use fails with ErrDuplicateID;
// id 0 is reserved.
func (c *Conn) OpenStreamID(ctx context.Context, id uint32) (mux.Stream, error) {
	if id == 0 {
		return nil, fmt.Errorf("%w: id 0 is reserved", ErrDuplicateID)
	}
	return c.open(ctx, id, true)
}

func (c *Conn) open(ctx context.Context, id uint32, fixed bool) (mux.Stream, error) {
	for {
		c.mu.Lock()
		switch {
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return nil, err
		case c.goingAway || c.peerGoingAway:
			c.mu.Unlock()
			return nil, mux.ErrGoingAway
		}
		if c.availLocked() > 0 {
			break
		}
		wake := c.credit
		c.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", mux.ErrNoCredit, context.Cause(ctx))
		}
	}
	s := c.sess
	if fixed {
		if s.streams[streamKey{id, true}] != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: %d", ErrDuplicateID, id)
		}
	} else {
		// At most MaxStreams ids are in use, so this ends quickly.
		for {
			c.nextID++
			if c.nextID != 0 && s.streams[streamKey{c.nextID, true}] == nil {
				break
			}
		}
		id = c.nextID
	}
	st := newFramedStream(s, id, true)
	s.streams[streamKey{id, true}] = st
	s.opened++
	c.mu.Unlock()
	// OPEN goes through the data queue so that it precedes the stream's data.
	if err := s.sendData(ctx, nil, outFrame{hdr: frameHeader{typ: frameOpen, id: id}, st: st}, true); err != nil {
		// Nothing was sent: forget the stream without a RESET.
		c.mu.Lock()
		if s.streams != nil && s.streams[streamKey{id, true}] == st {
			delete(s.streams, streamKey{id, true})
			s.opened--
		}
		c.mu.Unlock()
		return nil, fmt.Errorf("mux: open stream: %w", err)
	}
	return st, nil
}

// AcceptStream waits for a virtual connection opened by the peer.
func (c *Conn) AcceptStream(ctx context.Context) (mux.Stream, error) {
	select {
	case st := <-c.accepts:
		return st, nil
	case <-c.done:
		return nil, c.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// AvailStreams is the number of streams OpenStream opens without waiting.
func (c *Conn) AvailStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.availLocked()
}

// UsedStreams is the number of streams opened here and not finished.
func (c *Conn) UsedStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return 0
	}
	return c.sess.opened
}

// SetWatcher registers w (nil removes it).
func (c *Conn) SetWatcher(w mux.Watcher) {
	if w == nil {
		c.watcher.Store(nil)
		return
	}
	c.watcher.Store(&watcherRef{w})
}

// Ping sends a PING frame and waits for its PONG.
func (c *Conn) Ping(ctx context.Context) error {
	c.mu.Lock()
	s, err := c.sess, c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if s == nil {
		return fmt.Errorf("mux: ping: %w: reconnecting", ErrConnLost)
	}
	var token [8]byte
	rand.Read(token[:])
	id := binary.BigEndian.Uint64(token[:])
	ch := make(chan struct{})
	c.pingMu.Lock()
	c.pings[id] = ch
	c.pingMu.Unlock()
	s.sendCtrl(outFrame{hdr: frameHeader{typ: framePing, length: 8}, payload: token[:]})
	select {
	case <-ch:
		return c.Err()
	case <-s.dead:
		c.pingMu.Lock()
		delete(c.pings, id)
		c.pingMu.Unlock()
		return s.lostErr()
	case <-ctx.Done():
		c.pingMu.Lock()
		delete(c.pings, id)
		c.pingMu.Unlock()
		return fmt.Errorf("mux: ping: %w", ctx.Err())
	}
}

// Alive reports whether new streams can be opened (now or, while
// reconnecting, once reconnected).
func (c *Conn) Alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && !c.goingAway && !c.peerGoingAway
}

// Done is closed when the connection is dead.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection died.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Shutdown sends GOAWAY, takes no new streams (neither opened here nor by
// the peer), and closes once the open ones have finished or ctx ended.
func (c *Conn) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil
	}
	first := !c.goingAway
	c.goingAway = true
	s := c.sess
	var idle chan struct{}
	if s != nil && s.opened+s.accepted > 0 {
		if c.idle == nil {
			c.idle = make(chan struct{})
		}
		idle = c.idle
	}
	c.mu.Unlock()
	if s != nil && first {
		s.sendCtrl(outFrame{hdr: frameHeader{typ: frameGoAway}})
	}
	return shutdown.Finish(ctx, idle, c.closeWith)
}

// Close closes at once; open streams fail with an error wrapping
// net.ErrClosed.
func (c *Conn) Close() error {
	c.closeWith(fmt.Errorf("mux: connection closed: %w", net.ErrClosed))
	return nil
}

func (c *Conn) closeWith(err error) {
	c.die(err)
	<-c.done
}

// Kind is mux.KindFramed.
func (c *Conn) Kind() mux.Kind { return mux.KindFramed }

// LocalAddr is the current TCP connection's local address (nil while
// reconnecting).
func (c *Conn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return nil
	}
	return c.sess.nc.LocalAddr()
}

// RemoteAddr is the current TCP connection's remote address (nil while
// reconnecting).
func (c *Conn) RemoteAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return nil
	}
	return c.sess.nc.RemoteAddr()
}

// Stats returns the connection's counters.
func (c *Conn) Stats() Stats {
	return Stats{
		FramesIn:       c.framesIn.Load(),
		FramesOut:      c.framesOut.Load(),
		UnknownStream:  c.unknown.Load(),
		ResetsSent:     c.resetsSent.Load(),
		ResetsReceived: c.resetsRecv.Load(),
		Dropped:        c.dropped.Load(),
		Reconnects:     c.reconnects.Load(),
	}
}
