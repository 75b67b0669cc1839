package stack

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// UDPConn is a UDP socket on the netstack: a net.PacketConn, and a net.Conn
// when connected (DialUDP). ListenUDP and DialUDP return one.
//
// It is made for one packet per call at a high rate, which is how quic-go
// drives any socket that is not a kernel *net.UDPConn: each direction keeps
// one waiter entry registered for the socket's life (gonet registers one per
// blocking call), a read reuses the peer's cached *net.UDPAddr, a write
// reuses a pooled request, and deadlines arm one reusable timer per
// direction only when set. SetReadBuffer and
// SetWriteBuffer size the socket's buffers (SO_RCVBUF/SO_SNDBUF), within
// the stack's limits; quic-go calls them when present.
//
// The *net.UDPAddr values ReadFrom and RemoteAddr return are shared between
// calls: callers must not modify them.
type UDPConn struct {
	s     *Stack
	ep    tcpip.Endpoint
	wq    waiter.Queue
	laddr *net.UDPAddr
	// raddr is the connected peer; nil for an unconnected socket.
	raddr *net.UDPAddr
	// fast sends a connected socket's datagrams; fastPeers sends an
	// unconnected socket's bound to one address, a path per destination;
	// fastRX receives a connected or address-bound socket's. Nil when they
	// do not apply. See udpfast.go.
	fast      *udpFastPath
	fastPeers *udpFastPeers
	fastRX    *udpFastRX
	closed    atomic.Bool

	rd, wr udpDir

	// wmu lets one writer at a time wait for room in the send buffer;
	// writes that need not wait take no lock.
	wmu sync.Mutex
	// rmu serialises reads, as the net package does.
	rmu sync.Mutex
	// dst is the reader's buffer as ep.Read wants it (a field, so that it
	// is not allocated per read).
	// +checklocks:rmu
	dst tcpip.SliceWriter
	// +checklocks:rmu
	peers map[udpPeer]*net.UDPAddr
}

var (
	_ net.PacketConn = (*UDPConn)(nil)
	_ net.Conn       = (*UDPConn)(nil)
)

// maxCachedPeers bounds ReadFrom's address cache of an unconnected socket;
// beyond it the cache starts over, so a scan from many sources cannot grow
// it without bound.
const maxCachedPeers = 4096

type udpPeer struct {
	addr tcpip.Address
	port uint16
}

// udpDir is one direction's waiting state. wake holds at most one token:
// a readiness event, the deadline firing or Close put it there, and the
// waiter re-checks everything after taking it, so a stale token costs one
// retry and a missed one cannot happen (the entry stays registered).
type udpDir struct {
	wake  chan struct{}
	entry waiter.Entry
	dl    deadline
}

func (d *udpDir) init(wq *waiter.Queue, mask waiter.EventMask) {
	d.wake = make(chan struct{}, 1)
	d.dl.wake = d.wake
	d.entry.Init(waiter.ChannelNotifier(d.wake), mask)
	wq.EventRegister(&d.entry)
}

// deadline is one direction's deadline. expired is read on every call; the
// timer is made on the first deadline set and reset afterwards.
type deadline struct {
	expired atomic.Bool
	wake    chan struct{}

	mu sync.Mutex
	// +checklocks:mu
	at time.Time
	// +checklocks:mu
	timer *time.Timer
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = t
	if d.timer != nil {
		d.timer.Stop()
	}
	switch wait := time.Until(t); {
	case t.IsZero():
		d.expired.Store(false)
	case wait <= 0:
		d.expired.Store(true)
		notify(d.wake)
	default:
		d.expired.Store(false)
		if d.timer == nil {
			d.timer = time.AfterFunc(wait, d.fire)
		} else {
			d.timer.Reset(wait)
		}
	}
}

// fire runs when the timer expires; a deadline moved meanwhile wins.
func (d *deadline) fire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.at.IsZero() && !time.Now().Before(d.at) {
		d.expired.Store(true)
		notify(d.wake)
	}
}

func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// newUDPConn opens a UDP endpoint, binds it to laddr (nil: chosen on
// connect) and connects it to raddr (nil: unconnected).
func (s *Stack) newUDPConn(proto tcpip.NetworkProtocolNumber, laddr, raddr *tcpip.FullAddress) (*UDPConn, error) {
	c := &UDPConn{s: s}
	ep, terr := s.ns.NewEndpoint(udp.ProtocolNumber, proto, &c.wq)
	if terr != nil {
		return nil, tcpipErr(terr)
	}
	c.ep = ep
	if laddr != nil {
		if terr := ep.Bind(*laddr); terr != nil {
			ep.Close()
			return nil, tcpipErr(terr)
		}
	}
	if raddr != nil {
		if terr := ep.Connect(*raddr); terr != nil {
			ep.Close()
			return nil, tcpipErr(terr)
		}
	} else {
		c.peers = make(map[udpPeer]*net.UDPAddr)
	}
	la, _ := ep.GetLocalAddress()
	c.laddr = udpAddr(la.Addr, la.Port)
	c.rd.init(&c.wq, waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr)
	c.wr.init(&c.wq, waiter.WritableEvents|waiter.EventHUp|waiter.EventErr)
	var ra tcpip.FullAddress
	if raddr != nil {
		ra, _ = ep.GetRemoteAddress()
		c.raddr = udpAddr(ra.Addr, ra.Port)
		c.fast = newUDPFastPath(s, ep, proto, la, ra)
	} else if la.Addr.BitLen() > 0 && !la.Addr.Unspecified() {
		c.fastPeers = &udpFastPeers{s: s, ep: ep, proto: proto, local: la}
	}
	c.fastRX = s.newUDPFastRX(ep, c.rd.wake, la, ra)
	return c, nil
}

func udpAddr(a tcpip.Address, port uint16) *net.UDPAddr {
	return &net.UDPAddr{IP: net.IP(a.AsSlice()), Port: int(port)}
}

// opError builds the error of an operation; addr is the peer, if any.
func (c *UDPConn) opError(op string, addr net.Addr, err error) error {
	if c.s.isClosed() && errors.Is(err, net.ErrClosed) {
		err = ErrClosed
	}
	if addr == nil && c.raddr != nil {
		addr = c.raddr
	}
	return &net.OpError{Op: op, Net: "udp", Source: c.laddr, Addr: addr, Err: err}
}

// blocked says whether to wait for d and, if not, why: the socket closed or
// the deadline passed.
func (c *UDPConn) blocked(d *udpDir) error {
	switch {
	case c.closed.Load():
		return net.ErrClosed
	case d.dl.expired.Load():
		return os.ErrDeadlineExceeded
	}
	return nil
}

// wait sleeps until d's next wake-up unless the socket is closed or d's
// deadline passed, before or meanwhile; a nil error means try again.
func (c *UDPConn) wait(d *udpDir) error {
	if err := c.blocked(d); err != nil {
		return err
	}
	<-d.wake
	return c.blocked(d)
}

// ReadFrom reads one datagram into b (the excess of a longer one is lost)
// and returns the sender's address, a shared *net.UDPAddr.
func (c *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if err := c.blocked(&c.rd); err != nil {
		return 0, nil, c.opError("read", nil, err)
	}
	opts := tcpip.ReadOptions{NeedRemoteAddr: c.raddr == nil}
	defer func() { c.dst = nil }()
	for {
		if c.fastRX != nil {
			if n, from, ok := c.fastRX.pop(b); ok {
				if c.raddr != nil {
					return n, c.raddr, nil
				}
				return n, c.peer(tcpip.FullAddress{Addr: from.addr, Port: from.port}), nil
			}
		}
		c.dst = b
		res, terr := c.ep.Read(&c.dst, opts)
		if terr == nil {
			if c.raddr != nil {
				return res.Count, c.raddr, nil
			}
			return res.Count, c.peer(res.RemoteAddr), nil
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			err := tcpipErr(terr)
			if c.closed.Load() {
				err = net.ErrClosed
			}
			return 0, nil, c.opError("read", nil, err)
		}
		if err := c.wait(&c.rd); err != nil {
			return 0, nil, c.opError("read", nil, err)
		}
	}
}

// peer returns the cached address of a sender.
//
// +checklocks:c.rmu
func (c *UDPConn) peer(a tcpip.FullAddress) *net.UDPAddr {
	k := udpPeer{a.Addr, a.Port}
	if ua, ok := c.peers[k]; ok {
		return ua
	}
	if len(c.peers) >= maxCachedPeers {
		clear(c.peers)
	}
	ua := udpAddr(a.Addr, a.Port)
	c.peers[k] = ua
	return ua
}

// Read reads one datagram.
func (c *UDPConn) Read(b []byte) (int, error) {
	n, _, err := c.ReadFrom(b)
	return n, err
}

// Write sends b to the connected peer.
func (c *UDPConn) Write(b []byte) (int, error) { return c.write(b, nil) }

// WriteTo sends b to addr, a *net.UDPAddr. On a connected socket, writing
// to its peer takes the connected route.
func (c *UDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua == nil {
		return 0, c.opError("write", addr, fmt.Errorf("address type %T is not *net.UDPAddr", addr))
	}
	if c.raddr != nil && (ua == c.raddr || ua.Port == c.raddr.Port && ua.IP.Equal(c.raddr.IP)) {
		ua = nil
	}
	return c.write(b, ua)
}

// writeReq is what ep.Write takes by pointer. Only writes off the fast
// paths (wildcard sockets, routes not resolved yet, fragments) make one.
type writeReq struct {
	r  bytes.Reader
	to tcpip.FullAddress
}

func (c *UDPConn) write(b []byte, to *net.UDPAddr) (int, error) {
	var addr net.Addr
	if to != nil {
		addr = to
	}
	if err := c.blocked(&c.wr); err != nil {
		return 0, c.opError("write", addr, err)
	}
	if to == nil && c.fast != nil && c.fast.write(b) {
		return len(b), nil
	}
	if to != nil && c.fastPeers != nil {
		if f := c.fastPeers.path(to); f != nil && f.write(b) {
			return len(b), nil
		}
	}
	req := new(writeReq)
	var opts tcpip.WriteOptions
	if to != nil {
		ip := to.IP
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		} else if len(ip) != net.IPv6len {
			return 0, c.opError("write", addr, fmt.Errorf("invalid IP address %v", to.IP))
		}
		if to.Port <= 0 || to.Port > 0xffff {
			return 0, c.opError("write", addr, fmt.Errorf("invalid port %d", to.Port))
		}
		req.to = tcpip.FullAddress{Addr: tcpip.AddrFromSlice(ip), Port: uint16(to.Port)}
		opts.To = &req.to
	}
	req.r.Reset(b)
	n, terr := c.ep.Write(&req.r, opts)
	if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		for {
			n, terr = c.ep.Write(&req.r, opts)
			if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
				break
			}
			if err := c.wait(&c.wr); err != nil {
				return 0, c.opError("write", addr, err)
			}
		}
	}
	if terr != nil {
		err := tcpipErr(terr)
		if c.closed.Load() {
			err = net.ErrClosed
		}
		return 0, c.opError("write", addr, err)
	}
	return int(n), nil
}

// SetReadBuffer sets the receive buffer's size in bytes of datagram payload
// (SO_RCVBUF), clamped to the stack's limits (gVisor's defaults: 4 KiB to
// 4 MiB, initially 212 KiB). Datagrams that arrive while it is full are
// dropped.
func (c *UDPConn) SetReadBuffer(n int) error {
	if n < 0 {
		return c.opError("set", nil, fmt.Errorf("negative buffer size %d", n))
	}
	var lim tcpip.ReceiveBufferSizeOption
	if terr := c.s.ns.Option(&lim); terr != nil {
		return c.opError("set", nil, tcpipErr(terr))
	}
	c.ep.SocketOptions().SetReceiveBufferSize(int64(min(max(n, lim.Min), lim.Max)), true)
	return nil
}

// SetWriteBuffer sets the send buffer's size in bytes (SO_SNDBUF), clamped
// to the stack's limits: how much may wait for the link before a write
// blocks.
func (c *UDPConn) SetWriteBuffer(n int) error {
	if n < 0 {
		return c.opError("set", nil, fmt.Errorf("negative buffer size %d", n))
	}
	var lim tcpip.SendBufferSizeOption
	if terr := c.s.ns.Option(&lim); terr != nil {
		return c.opError("set", nil, tcpipErr(terr))
	}
	c.ep.SocketOptions().SetSendBufferSize(int64(min(max(n, lim.Min), lim.Max)), true)
	return nil
}

// SetReadDeadline implements net.Conn; reads past it fail with
// os.ErrDeadlineExceeded.
func (c *UDPConn) SetReadDeadline(t time.Time) error { c.rd.dl.set(t); return nil }

// SetWriteDeadline implements net.Conn; writes blocked past it (on a full
// send buffer) fail with os.ErrDeadlineExceeded.
func (c *UDPConn) SetWriteDeadline(t time.Time) error { c.wr.dl.set(t); return nil }

// SetDeadline sets both deadlines.
func (c *UDPConn) SetDeadline(t time.Time) error {
	c.rd.dl.set(t)
	c.wr.dl.set(t)
	return nil
}

// LocalAddr is the bound address (unspecified for a wildcard socket).
func (c *UDPConn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr is the connected peer, nil for an unconnected socket.
func (c *UDPConn) RemoteAddr() net.Addr {
	if c.raddr == nil {
		return nil
	}
	return c.raddr
}

// Close closes the socket and wakes blocked calls, which fail with an error
// wrapping net.ErrClosed.
func (c *UDPConn) Close() error {
	if c.closed.Swap(true) {
		return c.opError("close", nil, net.ErrClosed)
	}
	c.ep.Close()
	if c.fastRX != nil {
		c.s.unregisterUDPFastRX(c.fastRX)
	}
	c.wq.EventUnregister(&c.rd.entry)
	c.wq.EventUnregister(&c.wr.entry)
	c.rd.dl.stop()
	c.wr.dl.stop()
	notify(c.rd.wake)
	notify(c.wr.wake)
	return nil
}
