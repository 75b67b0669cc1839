package frontend

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Parking idle HTTP/1.1 client connections.
//
// net/http's server keeps, for every connection, a goroutine blocked in a
// read and a 4 KiB bufio reader and writer, idle or not: about 17 KiB per
// idle keep-alive connection before the TCP endpoint's own state (the
// engine's BenchmarkIdleConnMemory). Like HAProxy's dynamic buffers (a
// connection holds a buffer only while it moves data), a connection whose
// exchange is complete leaves the server instead: the handler hijacks it
// once the response is out, and it waits for its next request holding
// only its socket, its place in the frontend's parked list (parkedList:
// one idle timer for them all) and a read notification (readNotifier: a
// netstack wait-queue callback, no goroutine; on kernel sockets, a
// goroutine parked in the runtime poller without a buffer). When the
// client sends again, or closes, the connection goes back to the same
// http.Server through a second listener (resumeListener) and is served
// as before, with the same session (worker, backend reuse sessions) and
// the same slot under max_connections; bytes the server had read ahead
// (a pipelined request) are read again first. A parked connection idle
// for the frontend's timeouts.idle is closed, as the server would have.
//
// Only an exchange that is complete on the wire is parked: HTTP/1.1
// without "Connection: close", the request body (none, or one of a known
// length up to MaxReplayBody, which the proxy reads whole) consumed, and
// a response framed by Content-Length with exactly that many bytes
// written, or one that has no body (HEAD, 204, 304), without trailers.
// Anything else (chunked or streamed responses, errors mid-response)
// stays in the server, which keeps, closes or drains it as it always did.
// HTTP/2 connections are not parked (handoff.go).
//
// HTTPS HTTP/1.1 connections are parked the same way, their *tls.Conn
// kept whole (keys, sequence numbers, its read buffer): crypto/tls cannot
// drop its buffers, but the server's goroutine and buffers go, which is
// most of an idle HTTPS connection's cost (tlsBuffered takes the records
// it read ahead first).

// Parked connection states (clientConn.state).
const (
	connServed   int32 = iota // in the http.Server
	connParking               // being hijacked by park: not a close
	connParked                // waiting for its next request
	connResuming              // handed to resumeListener, not yet seen by the server
	connClosed                // closed while parked (idle timeout, shutdown)
	connHanding               // handed to an HTTP/2 goroutine, net/http letting go (handoff.go)
	connUpgraded              // switched to WebSocket, hijacked by its handler (upgrade.go)
)

// readNotifier is a connection that can call fn once when it becomes
// readable (data, end of stream, reset or error) without a goroutine
// reading it; stop cancels. stack's netstack TCP connections are one.
type readNotifier interface {
	NotifyReadable(fn func()) (stop func(), ok bool)
}

// idleReleaser is a connection that can drop the state it keeps for
// readers and writers while it has neither, such as deadline timers
// (stack's netstack connections).
type idleReleaser interface{ ReleaseIdle() }

// clientConn is an http frontend's client connection as the http.Server
// sees it: the same value across parks, so that the frontend's session
// map and limits follow it.
type clientConn struct {
	net.Conn // a *tls.Conn when tls
	fe       *Frontend
	tls      bool
	state    atomic.Int32
	// handed is set when the connection goes to an HTTP/2 goroutine.
	handed *handOff
	// pending holds bytes the server had read ahead when the connection
	// was parked; Read returns them first. Only the goroutine serving
	// the connection touches it.
	pending []byte
	// stop cancels the read notification while parked; it is set before
	// the state becomes connParked.
	stop func()
	// fired says the read notification came, maybe before the state
	// became connParked (park then wakes the connection itself).
	fired atomic.Bool
	// sess is the connection's session (ConnContext, track); connGone
	// takes it, once.
	sess atomic.Pointer[session]
	// parkedAt is when park last parked the connection, on its
	// frontend's parked list's clock (written before the state says
	// parked, read by wake). skip is the number of exchanges the
	// connection is served without parking, set by wake and read by park
	// on the serving goroutine (ordered through resumeListener's mutex
	// and the server's start of that goroutine).
	parkedAt time.Duration
	skip     int32
	// prev and next link the connection in its frontend's parked list,
	// which holds it while listed is set (parkedList's mutex guards the
	// three).
	prev, next *clientConn
	listed     bool
	// busyRun is skip's last value: it doubles at each quick return.
	busyRun int32
	// fresh is set when the server gets the connection (accepted or
	// resumed), which it serves from a new goroutine; the first request
	// grows that goroutine's stack (stack.go). Set before the server
	// starts the goroutine, cleared on it.
	fresh bool
	// reserved is what the connection reserves in the memory budget now:
	// TCPBudget.Conn, or its parked share (tcpbudget.go). pinned says its
	// netstack buffers no longer auto-tune (regrowBuffers); park and
	// resume, on the serving goroutines, touch it.
	reserved atomic.Int64
	pinned   bool
	// framing watches the HTTP/1.x requests read for two framings
	// (framing.go).
	framing framingScan
}

// A connection whose client sends again within busyReturn of being parked
// is busy (a keep-alive load): it is served without parking for a run of
// exchanges that doubles from minBusyRun to maxBusyRun at each quick return,
// so a busy connection pays the hijack and the fresh server connection of
// a park once per run rather than once per request. One that stays away
// longer resets the run. The cost: a busy connection that falls idle within
// its run keeps the server's buffers until its next park or its idle
// timeout.
const (
	busyReturn = 10 * time.Millisecond
	minBusyRun = 16
	maxBusyRun = 1024
)

// closeWriter is what http.Server uses to half-close a TCP connection.
type closeWriter interface{ CloseWrite() error }

var (
	_ net.Conn    = (*clientConn)(nil)
	_ closeWriter = (*clientConn)(nil)
	_ net.Conn    = tlsClientConn{}
)

// tlsClientConn is how the http.Server sees an https connection, whose
// handshake is done (handoff.go): its ConnectionState is the request's
// TLS.
type tlsClientConn struct{ *clientConn }

func (c tlsClientConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(*tls.Conn).ConnectionState()
}

// served is c as the http.Server sees it.
func (c *clientConn) served() net.Conn {
	if c.tls {
		return tlsClientConn{c}
	}
	return c
}

// clientOf is the clientConn c is, else nil.
func clientOf(c net.Conn) *clientConn {
	switch c := c.(type) {
	case *clientConn:
		return c
	case tlsClientConn:
		return c.clientConn
	}
	return nil
}

// Close closes the connection, except net/http's close of a connection it
// handed to an HTTP/2 goroutine (handoff.go), which still serves it.
func (c *clientConn) Close() error {
	if c.state.Load() == connHanding {
		return nil
	}
	return c.Conn.Close()
}

func (c *clientConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		if c.pending = c.pending[n:]; len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	n, err := c.Conn.Read(b)
	c.framing.scan(b[:n])
	return n, err
}

// Write grows the stack of the HTTP/2 server's goroutines that write an
// h2c connection (stack.go).
func (c *clientConn) Write(b []byte) (int, error) {
	if c.handed != nil {
		growStack()
	}
	return c.Conn.Write(b)
}

// NetConn is the accepted connection (workerAddrs looks through it).
func (c *clientConn) NetConn() net.Conn { return c.Conn }

func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// parkingListener wraps each accepted connection in a clientConn.
type parkingListener struct {
	net.Listener
	fe *Frontend
}

func (l parkingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &clientConn{Conn: c, fe: l.fe, fresh: true}
	cc.reserved.Store(l.fe.env.TCP.Conn) // limitListener reserved it
	return cc, nil
}

// resumeListener hands parked connections that became readable back to
// the http.Server. Its queue is unbounded: it holds at most the parked
// connections, which the frontend's limits bound.
type resumeListener struct {
	addr net.Addr

	mu sync.Mutex
	// +checklocks:mu
	queue []*clientConn
	// +checklocks:mu
	closed bool
	ready  chan struct{} // one token when the queue may be non-empty
	done   chan struct{} // closed by Close
}

var _ net.Listener = (*resumeListener)(nil)

func newResumeListener(addr net.Addr) *resumeListener {
	return &resumeListener{addr: addr, ready: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues c; it never blocks (a netstack callback calls it). It
// reports false once the listener is closed.
func (l *resumeListener) push(c *clientConn) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, c)
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}:
	default:
	}
	return true
}

func (l *resumeListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			if l.queue = l.queue[1:]; len(l.queue) == 0 {
				l.queue = nil
			}
			l.mu.Unlock()
			c.stop()
			c.stop = nil
			c.regrowBuffers()
			c.fresh = true
			return c.served(), nil
		}
		closed := l.closed
		l.mu.Unlock()
		if closed {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
		}
		select {
		case <-l.ready:
		case <-l.done:
		}
	}
}

// Close stops accepting; connections still queued are closed and leave
// their frontend.
func (l *resumeListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	close(l.done)
	for _, c := range q {
		c.stop()
		c.Conn.Close()
		c.fe.connGone(c)
	}
	return nil
}

func (l *resumeListener) Addr() net.Addr { return l.addr }

// parkWriter counts what the handler wrote, for park's check that the
// response is complete.
type parkWriter struct {
	http.ResponseWriter
	status  int
	written int64
}

func (w *parkWriter) WriteHeader(code int) {
	if w.status == 0 || w.status < 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *parkWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *parkWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// parkable reports whether the exchange of r answered through w is
// complete on the wire, so that the connection may leave the server.
func parkable(w *parkWriter, r *http.Request) bool {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.Close || len(r.TransferEncoding) > 0 ||
		r.ContentLength < 0 || r.ContentLength > MaxReplayBody {
		return false
	}
	h := w.Header()
	if w.status < 200 || h.Get("Connection") != "" || h.Get("Trailer") != "" {
		return false
	}
	for k := range h {
		if len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix {
			return false
		}
	}
	if r.Method == http.MethodHead || w.status == http.StatusNoContent || w.status == http.StatusNotModified {
		return w.written == 0
	}
	cl, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	return err == nil && cl == w.written
}

// park moves the connection of a completed exchange out of the server
// (see the comment at the top of this file). It reports whether it did;
// the handler must return right after.
func (fe *Frontend) park(w *parkWriter, r *http.Request) bool {
	c := clientOf(connOf(r))
	if c == nil || fe.draining.Load() || !parkable(w, r) {
		return false
	}
	if c.skip > 0 {
		c.skip--
		return false
	}
	if socketOf(c.Conn) == nil {
		return false
	}
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return false
	}
	c.state.Store(connParking)
	_, brw, err := rc.Hijack()
	if err != nil {
		c.state.Store(connServed)
		return false
	}
	// The server's buffers go with it; keep only what it read ahead.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		c.pending = append([]byte(nil), b...)
	}
	// The hijacked reader and writer are ours now: drop their buffers,
	// which the server's connection object, still reachable from its
	// stack's deadline timers for a while, would otherwise keep.
	*brw.Reader, *brw.Writer = bufio.Reader{}, bufio.Writer{}
	ready := c.pending != nil
	if c.tls {
		var err error
		had := len(c.pending)
		c.pending, err = tlsBuffered(c.Conn.(*tls.Conn), c.pending)
		c.framing.scan(c.pending[had:]) // read past clientConn.Read
		// An error (the client's close_notify, a bad record) is
		// crypto/tls's to repeat to the server, at once.
		ready = c.pending != nil || err != nil
	}
	c.shrinkBuffers()
	// Nobody reads or writes the socket until wake, and the server sets
	// its deadlines again then.
	if r, ok := socketOf(c.Conn).(idleReleaser); ok {
		r.ReleaseIdle()
	}
	c.stop = func() {}
	if !ready {
		c.fired.Store(false)
		c.stop = notifyReadable(c.Conn, func() { c.fired.Store(true); c.wake() })
	}
	// The connection is listed and stop set before the state says
	// parked: wake and expire read them once they see it.
	fe.parked.add(c)
	c.state.Store(connParked)
	if ready || c.fired.Load() {
		c.wake()
		return true
	}
	// A Shutdown that began meanwhile did not see this connection parked.
	if fe.draining.Load() {
		c.expire()
	}
	return true
}

// tlsBuffered appends to p what tc has received and not given out yet:
// crypto/tls reads from the socket as much as it gets, so records that
// came with the last request (pipelined ones) may wait in it, where the
// socket's read notification would not see them. A read whose deadline has
// passed decrypts the whole records it holds and reads nothing from the
// socket; the timeout it then returns leaves the connection usable.
func tlsBuffered(tc *tls.Conn, p []byte) ([]byte, error) {
	tc.SetReadDeadline(time.Unix(1, 0))
	defer tc.SetReadDeadline(time.Time{})
	var b [512]byte
	for {
		n, err := tc.Read(b[:])
		p = append(p, b[:n]...)
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return p, nil
		}
		if err != nil {
			return p, err
		}
	}
}

// wake hands a parked connection back to the server.
func (c *clientConn) wake() {
	if !c.state.CompareAndSwap(connParked, connResuming) {
		return
	}
	if c.fe.parked.remove(c) < busyReturn {
		c.busyRun = min(max(2*c.busyRun, minBusyRun), maxBusyRun)
	} else {
		c.busyRun = 0
	}
	c.skip = c.busyRun
	if !c.fe.resume.push(c) {
		c.state.Store(connClosed)
		c.stop()
		c.Conn.Close()
		c.fe.connGone(c)
	}
}

// expire closes a connection that stayed parked for the idle timeout, or
// that a Shutdown finds parked.
func (c *clientConn) expire() {
	if !c.state.CompareAndSwap(connParked, connClosed) {
		return
	}
	c.fe.parked.remove(c)
	c.stop()
	c.Conn.Close()
	c.fe.connGone(c)
}

// notifyReadable calls fn once when c is readable: through the stack's
// callback where it has one, else from a goroutine waiting in the runtime
// poller without reading (stop ends and joins it).
func notifyReadable(c net.Conn, fn func()) (stop func()) {
	s := socketOf(c)
	if rn, ok := s.(readNotifier); ok {
		if stop, ok := rn.NotifyReadable(fn); ok {
			return stop
		}
	}
	raw, err := s.(syscall.Conn).SyscallConn()
	if err != nil {
		fn()
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Peek: the poller is edge-triggered, so bytes that came before
		// the wait must be seen here rather than waited for. Anything
		// but "nothing yet" (data, end of stream, an error) wakes.
		var b [1]byte
		raw.Read(func(fd uintptr) bool {
			_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return err != unix.EAGAIN && err != unix.EINTR
		})
		fn()
	}()
	return func() {
		c.SetReadDeadline(time.Unix(1, 0))
		<-done
		c.SetReadDeadline(time.Time{})
	}
}

// socketOf is the socket under c (past wrappers without buffers of their
// own that say what they wrap, such as a PROXY protocol connection) when
// it can notify readability, else nil.
func socketOf(c net.Conn) net.Conn {
	for {
		switch c.(type) {
		case readNotifier, syscall.Conn:
			return c
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
}

// resumed reports whether c, starting in the server, is a parked
// connection coming back, or an https one the frontend counted (not a new
// one to count).
func resumed(c net.Conn) bool {
	cc := clientOf(c)
	return cc != nil && cc.state.CompareAndSwap(connResuming, connServed)
}

// parking reports whether the server's hijack of c is park's, or its close
// the end of a hand-off to an HTTP/2 goroutine (which it releases).
func parking(c net.Conn) bool {
	cc := clientOf(c)
	if cc == nil {
		return false
	}
	switch cc.state.Load() {
	case connParking, connUpgraded:
		return true
	case connHanding:
		cc.state.Store(connServed)
		close(cc.handed.released)
		return true
	}
	return false
}

// closeParked closes the connections parked when Shutdown begins; park
// parks no more once draining is set.
func (fe *Frontend) closeParked() {
	fe.draining.Store(true)
	for _, c := range fe.parked.takeAll() {
		c.expire()
	}
}

// parkedList holds a frontend's parked connections in the order they were
// parked, with one timer for the oldest: every connection of a frontend has
// the same idle timeout, so the oldest expires first, and the list costs a
// connection two pointers where a timer of its own would cost it ~100
// bytes (BenchmarkIdleConnMemory in engine).
type parkedList struct {
	idle  time.Duration // timeouts.idle; none when <= 0
	epoch time.Time     // the list's clock counts from it (monotonic)

	mu sync.Mutex
	// +checklocks:mu
	head, tail *clientConn
	// timer fires when the head's idle timeout ends; armed while the
	// list is not empty and idle > 0.
	// +checklocks:mu
	timer *time.Timer
}

func newParkedList(idle time.Duration) *parkedList {
	return &parkedList{idle: idle, epoch: time.Now()}
}

func (l *parkedList) now() time.Duration { return time.Since(l.epoch) }

// add lists c as parked now.
func (l *parkedList) add(c *clientConn) {
	now := l.now()
	c.parkedAt = now
	l.mu.Lock()
	defer l.mu.Unlock()
	c.prev, c.next, c.listed = l.tail, nil, true
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
		l.arm(now)
	}
	l.tail = c
}

// remove unlists c if listed and returns how long it was parked.
func (l *parkedList) remove(c *clientConn) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.listed {
		l.unlink(c)
	}
	return now - c.parkedAt
}

// +checklocks:l.mu
func (l *parkedList) unlink(c *clientConn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.prev, c.next, c.listed = nil, nil, false
}

// arm sets the timer for the head's expiry.
// +checklocks:l.mu
func (l *parkedList) arm(now time.Duration) {
	if l.idle <= 0 || l.head == nil {
		return
	}
	d := max(l.head.parkedAt+l.idle-now, 0)
	if l.timer == nil {
		l.timer = time.AfterFunc(d, l.expire)
	} else {
		l.timer.Reset(d)
	}
}

// expire closes the connections parked for the idle timeout.
func (l *parkedList) expire() {
	var due []*clientConn
	l.mu.Lock()
	now := l.now()
	for l.head != nil && now-l.head.parkedAt >= l.idle {
		c := l.head
		l.unlink(c)
		due = append(due, c)
	}
	l.arm(now)
	l.mu.Unlock()
	for _, c := range due {
		c.expire()
	}
}

// takeAll unlists every parked connection and returns them.
func (l *parkedList) takeAll() []*clientConn {
	var all []*clientConn
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.head != nil {
		c := l.head
		l.unlink(c)
		all = append(all, c)
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	return all
}

// connKey carries a client connection in its context, for park.
type connKey struct{}

// connOf is the client connection r came on, else nil.
func connOf(r *http.Request) net.Conn {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	return c
}

// connGone is the end of an http frontend's client connection: it leaves
// the gauge, its session closes (its private backend connections with it)
// and its slots under max_connections and its buffer reservation are
// freed; an https connection's handshake is counted. Once per connection:
// the session was stored by
// ConnContext, right after limitListener admitted the connection, or by
// track once its TLS handshake was done.
func (fe *Frontend) connGone(c net.Conn) {
	cc := clientOf(c)
	if cc == nil {
		return
	}
	if s := cc.sess.Swap(nil); s != nil {
		if cc.tls {
			fe.countHandshake(cc.Conn.(*tls.Conn))
		}
		fe.env.Counters.ClientConns.WithLabelValues(fe.cfg.Name).Dec()
		s.close()
		fe.leave()
		fe.env.TCP.release(fe.env.TCP.held(cc))
	}
}
