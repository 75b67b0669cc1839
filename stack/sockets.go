package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

var netErrClosed = net.ErrClosed

// defaultListenBacklog matches Linux's default somaxconn: enough for the
// 1,000 concurrent handshakes a busy frontend sees without falling back to
// SYN cookies.
const defaultListenBacklog = 4096

// fullAddr converts an AddrPort; an invalid or unspecified address means
// "any" and binds IPv6 dual-stack (IPv4 arrives as IPv4-mapped).
func fullAddr(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	a := ap.Addr().Unmap()
	if !a.IsValid() || a == netip.IPv6Unspecified() {
		return tcpip.FullAddress{Port: ap.Port()}, ipv6.ProtocolNumber
	}
	if a == netip.IPv4Unspecified() {
		return tcpip.FullAddress{Port: ap.Port()}, netProto(a)
	}
	return tcpip.FullAddress{Addr: toAddr(a), Port: ap.Port()}, netProto(a)
}

// ListenTCP listens on addr. The zero or unspecified address listens on every
// address of the stack, IPv6 and IPv4; port 0 picks a free port.
func (s *Stack) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	if s.isClosed() {
		return nil, opErr("listen", "tcp", addr, ErrClosed)
	}
	fa, proto := fullAddr(addr)
	var wq waiter.Queue
	ep, terr := s.ns.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, opErr("listen", "tcp", addr, tcpipErr(terr))
	}
	// SO_REUSEADDR, as Go's net package sets on every kernel listener: a
	// listener opened again on the address of one just closed (a reload
	// that changes a frontend's protocol) binds though that one's
	// connections are still open or in TIME-WAIT.
	ep.SocketOptions().SetReuseAddress(true)
	if terr := ep.Bind(fa); terr != nil {
		ep.Close()
		return nil, opErr("listen", "tcp", addr, tcpipErr(terr))
	}
	if terr := ep.Listen(s.backlog); terr != nil {
		ep.Close()
		return nil, opErr("listen", "tcp", addr, tcpipErr(terr))
	}
	return &tcpListener{ep: ep, wq: &wq, s: s, cancel: make(chan struct{})}, nil
}

// DialTCP connects to addr, choosing the source address by route. The
// context bounds the handshake only.
func (s *Stack) DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return s.DialTCPFrom(ctx, netip.AddrPort{}, addr)
}

// DialTCPFrom connects to raddr from laddr (zero fields: chosen by the
// stack).
func (s *Stack) DialTCPFrom(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
	if s.isClosed() {
		return nil, opErr("dial", "tcp", raddr, ErrClosed)
	}
	if !raddr.Addr().IsValid() || raddr.Port() == 0 {
		return nil, opErr("dial", "tcp", raddr, errors.New("invalid remote address"))
	}
	rfa, proto := fullAddr(raddr)
	var lfa tcpip.FullAddress
	if laddr.IsValid() {
		lfa, _ = fullAddr(laddr)
	}
	// gonet.DialTCPWithBind's steps, keeping the endpoint and its queue so
	// that the connection can notify readability (NotifyReadable) as an
	// accepted one does.
	var wq waiter.Queue
	ep, terr := s.ns.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, opErr("dial", "tcp", raddr, tcpipErr(terr))
	}
	entry, writable := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	if err := ctx.Err(); err != nil {
		ep.Close()
		return nil, opErr("dial", "tcp", raddr, err)
	}
	if lfa != (tcpip.FullAddress{}) {
		if terr := ep.Bind(lfa); terr != nil {
			ep.Close()
			return nil, opErr("dial", "tcp", raddr, tcpipErr(terr))
		}
	}
	terr = ep.Connect(rfa)
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, opErr("dial", "tcp", raddr, ctx.Err())
		case <-writable:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, opErr("dial", "tcp", raddr, tcpipErr(terr))
	}
	return newTCPConn(s, &wq, ep, true), nil
}

// ListenUDP opens a UDP socket bound to addr (zero or unspecified address:
// every address, dual-stack; port 0: a free port). It is a *UDPConn;
// WriteTo takes a *net.UDPAddr. Bound to a unicast address, it receives
// straight from an Endpoint's frames (see the package doc).
func (s *Stack) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	if s.isClosed() {
		return nil, opErr("listen", "udp", addr, ErrClosed)
	}
	fa, proto := fullAddr(addr)
	c, err := s.newUDPConn(proto, &fa, nil)
	if err != nil {
		return nil, opErr("listen", "udp", addr, err)
	}
	return c, nil
}

// DialUDP opens a UDP socket connected to raddr, from laddr (zero fields:
// chosen by the stack). It is a *UDPConn. When its route leaves by an
// Endpoint, its datagrams skip netstack's send and receive paths (see the
// package doc).
func (s *Stack) DialUDP(laddr, raddr netip.AddrPort) (net.Conn, error) {
	if s.isClosed() {
		return nil, opErr("dial", "udp", raddr, ErrClosed)
	}
	if !raddr.Addr().IsValid() || raddr.Port() == 0 {
		return nil, opErr("dial", "udp", raddr, errors.New("invalid remote address"))
	}
	rfa, proto := fullAddr(raddr)
	var lp *tcpip.FullAddress
	if laddr.IsValid() {
		lfa, _ := fullAddr(laddr)
		lp = &lfa
	}
	c, err := s.newUDPConn(proto, lp, &rfa)
	if err != nil {
		return nil, opErr("dial", "udp", raddr, err)
	}
	return c, nil
}

func opErr(op, network string, addr netip.AddrPort, err error) error {
	var a net.Addr
	if network == "tcp" {
		a = net.TCPAddrFromAddrPort(addr)
	} else {
		a = net.UDPAddrFromAddrPort(addr)
	}
	return &net.OpError{Op: op, Net: network, Addr: a, Err: err}
}

// tcpipErr turns a netstack error into a Go error. Closed and reset
// conditions wrap the errors the net package's users test for.
func tcpipErr(e tcpip.Error) error {
	switch e.(type) {
	case *tcpip.ErrClosedForSend, *tcpip.ErrClosedForReceive, *tcpip.ErrInvalidEndpointState:
		return fmt.Errorf("%s: %w", e, net.ErrClosed)
	case *tcpip.ErrPortInUse:
		return fmt.Errorf("%s: %w", e, errAddrInUse)
	case *tcpip.ErrConnectionRefused:
		// An ICMP port unreachable on a connected socket, as ECONNREFUSED
		// from a kernel one.
		return fmt.Errorf("%s: %w", e, syscall.ECONNREFUSED)
	}
	return errors.New(e.String())
}

var errAddrInUse = errors.New("address already in use")

// tcpListener accepts as gonet.TCPListener does, keeping each accepted
// endpoint's wait queue for tcpConn.NotifyReadable, and maps errors after
// its Close, or the stack's, to net.ErrClosed, which is what http.Server
// and friends look for to stop quietly.
type tcpListener struct {
	ep         tcpip.Endpoint
	wq         *waiter.Queue
	s          *Stack
	cancel     chan struct{} // closed by Close: wakes blocked Accept calls
	cancelOnce sync.Once
	closed     atomic.Bool
}

var _ net.Listener = (*tcpListener)(nil)

func (l *tcpListener) Accept() (net.Conn, error) {
	n, wq, terr := l.ep.Accept(nil)
	if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
		entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
		l.wq.EventRegister(&entry)
		defer l.wq.EventUnregister(&entry)
		for {
			if n, wq, terr = l.ep.Accept(nil); !isWouldBlock(terr) {
				break
			}
			select {
			case <-l.cancel:
				return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
			case <-ready:
			}
		}
	}
	if terr != nil {
		err := tcpipErr(terr)
		if l.closed.Load() || l.s.isClosed() {
			err = net.ErrClosed
		}
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: err}
	}
	return newTCPConn(l.s, wq, n, false), nil
}

func isWouldBlock(e tcpip.Error) bool {
	_, ok := e.(*tcpip.ErrWouldBlock)
	return ok
}

func (l *tcpListener) Close() error {
	if l.closed.Swap(true) {
		return &net.OpError{Op: "close", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
	// Shutdown and the cancel channel wake blocked Accept calls; Close
	// releases the endpoint and resets connections still in the accept
	// queue.
	l.ep.Shutdown(tcpip.ShutdownWrite | tcpip.ShutdownRead)
	l.cancelOnce.Do(func() { close(l.cancel) })
	l.ep.Close()
	return nil
}

func (l *tcpListener) Addr() net.Addr {
	a, err := l.ep.GetLocalAddress()
	if err != nil {
		return nil
	}
	return &net.TCPAddr{IP: net.IP(a.Addr.AsSlice()), Port: int(a.Port)}
}

// tcpConn is a netstack TCP connection through gonet.TCPConn, which it
// makes when first needed and drops in ReleaseIdle. It reports
// net.ErrClosed after a local Close or the stack's.
type tcpConn struct {
	// g is the gonet adapter, nil after ReleaseIdle until the next use.
	g atomic.Pointer[gonet.TCPConn]
	// wq and ep are the endpoint under it.
	// dialed: DialTCP made it (SetBufferSizes is for accepted ones).
	wq     *waiter.Queue
	ep     tcpip.Endpoint
	dialed bool
	s      *Stack
	closed atomic.Bool
}

func newTCPConn(s *Stack, wq *waiter.Queue, ep tcpip.Endpoint, dialed bool) *tcpConn {
	c := &tcpConn{wq: wq, ep: ep, s: s, dialed: dialed}
	c.g.Store(gonet.NewTCPConn(wq, ep))
	return c
}

// conn is the gonet adapter, made anew after ReleaseIdle.
func (c *tcpConn) conn() *gonet.TCPConn {
	if g := c.g.Load(); g != nil {
		return g
	}
	if g := gonet.NewTCPConn(c.wq, c.ep); c.g.CompareAndSwap(nil, g) {
		return g
	}
	return c.g.Load()
}

// ReleaseIdle drops the adapter's per-connection state (its deadline
// timers and channels, ~300 bytes) of a connection that nobody reads or
// writes now and that has no deadline to keep, such as a parked client
// connection (engine/frontend); the next call makes it again, without
// deadlines.
func (c *tcpConn) ReleaseIdle() { c.g.Store(nil) }

func (c *tcpConn) isClosed() bool { return c.closed.Load() || c.s.isClosed() }

var _ net.Conn = (*tcpConn)(nil)

func (c *tcpConn) LocalAddr() net.Addr                { return c.conn().LocalAddr() }
func (c *tcpConn) RemoteAddr() net.Addr               { return c.conn().RemoteAddr() }
func (c *tcpConn) SetDeadline(t time.Time) error      { return c.conn().SetDeadline(t) }
func (c *tcpConn) SetReadDeadline(t time.Time) error  { return c.conn().SetReadDeadline(t) }
func (c *tcpConn) SetWriteDeadline(t time.Time) error { return c.conn().SetWriteDeadline(t) }
func (c *tcpConn) CloseRead() error                   { return c.conn().CloseRead() }
func (c *tcpConn) CloseWrite() error                  { return c.conn().CloseWrite() }

func (c *tcpConn) Read(b []byte) (int, error) {
	n, err := c.conn().Read(b)
	if err != nil {
		err = c.opError("read", err)
	}
	return n, err
}

func (c *tcpConn) Write(b []byte) (int, error) {
	n, err := c.conn().Write(b)
	if err != nil {
		err = c.opError("write", err)
	}
	return n, err
}

// opError is err as the net package reports it: net.ErrClosed after a
// local close, os.ErrDeadlineExceeded for a deadline (gonet's timeout error
// wraps neither).
func (c *tcpConn) opError(op string, err error) error {
	switch ne, ok := errors.AsType[net.Error](err); {
	case c.isClosed():
		err = net.ErrClosed
	case ok && ne.Timeout():
		err = os.ErrDeadlineExceeded
	default:
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

func (c *tcpConn) Close() error {
	if c.closed.Swap(true) {
		return &net.OpError{Op: "close", Net: "tcp", Err: net.ErrClosed}
	}
	c.ep.Close() // what gonet's Close does: a blocked Read or Write returns
	return nil
}

// NotifyReadable calls fn once, from netstack's goroutine, when the
// connection has data to read, has been shut down or reset by the peer,
// or has failed (at once when that is already so), without a goroutine or
// buffer waiting on it; stop cancels the notification. fn must not block
// nor call stop. It is how an idle client connection waits for its next
// request holding only its endpoint (engine/frontend parks them), and how
// an idle HTTP/1.1 backend connection learns that its server closed it
// (mux/httpmux). It reports false for a connection that cannot notify.
func (c *tcpConn) NotifyReadable(fn func()) (stop func(), ok bool) {
	if c.wq == nil {
		return nil, false
	}
	c.unpin()
	w := &readWatch{fn: fn, wq: c.wq}
	w.entry.Init(w, readWatchMask)
	c.wq.EventRegister(&w.entry)
	// An event that came before the registration is not notified again.
	if c.ep.Readiness(readWatchMask) != 0 {
		w.NotifyEvent(readWatchMask)
	}
	return w.stop, true
}

const readWatchMask = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr

// readWatch is a NotifyReadable registration, in one allocation: an idle
// connection holds it while it waits.
type readWatch struct {
	entry waiter.Entry
	fired atomic.Bool
	fn    func()
	wq    *waiter.Queue
}

var _ waiter.EventListener = (*readWatch)(nil)

func (w *readWatch) NotifyEvent(waiter.EventMask) {
	if !w.fired.Swap(true) {
		w.fn()
	}
}

func (w *readWatch) stop() { w.wq.EventUnregister(&w.entry) }

// unpin makes netstack forget the buffer of the connection's last write.
// A tcp.Endpoint keeps the reader of its last Write (in the io.LimitedReader
// it reuses), and through it the caller's slice: an idle connection would
// pin the 4 KiB buffer of the HTTP server that wrote last, though that
// server dropped it (BenchmarkIdleConnMemory in engine). A write whose
// payload claims a byte and fails to read it replaces that reader and
// queues nothing (netstack returns ErrBadBuffer, ignored here).
func (c *tcpConn) unpin() { c.ep.Write(noPayload{}, tcpip.WriteOptions{}) }

// noPayload is unpin's payload: it claims a byte and fails to read it
// (an io.EOF would make netstack wait for the byte forever).
type noPayload struct{}

var errNoPayload = errors.New("stack: no payload")

func (noPayload) Len() int                 { return 1 }
func (noPayload) Read([]byte) (int, error) { return 0, errNoPayload }

// SetBufferSizes sets the connection's receive and send buffers to rcv
// and snd bytes (SO_RCVBUF and SO_SNDBUF). With fixed, netstack's
// auto-tuning stops for the connection, so the sizes bound what netstack
// may buffer for it from then on (its receive queue may overrun rcv by one
// segment; a send buffer smaller than the bytes queued only stops writes
// until they are acknowledged). Without, auto-tuning (if on) may grow them
// again up to the stack's maxima, as the connection moves data: it grows
// the receive buffer as the application reads, the send buffer as writes
// blocked on it drain, so an idle connection's stay as set. A smaller
// receive buffer narrows the window the peer may fill (RFC 9293 section
// 3.8.6.2.1: segments beyond it are dropped and retransmitted, never
// lost). The engine cuts an idle client connection's buffers this way.
// It reports false for a connection that cannot (a dialed one).
func (c *tcpConn) SetBufferSizes(rcv, snd int, fixed bool) bool {
	if c.ep == nil || c.dialed {
		return false
	}
	o := c.ep.SocketOptions()
	o.SetReceiveBufferSize(int64(rcv), fixed)
	o.SetSendBufferSize(int64(snd), fixed)
	return true
}
