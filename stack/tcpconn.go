package stack

import (
	"bytes"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// This file is tcpConn's net.Conn I/O on a netstack TCP endpoint: what
// gVisor's gonet.TCPConn does, without its allocations per operation. gonet
// makes a wait entry and a channel for every Read that blocks and every
// Write that waits for room, a timer for every deadline set and a channel
// for every deadline that expires or is moved after its timer fired.
// net/http sets deadlines several times per request and ends its
// background read with a deadline in the past, so on the proxy those were
// a few percent of the CPU per request. Here, as for UDPConn, each
// direction has one wait entry, registered for the connection's life, one
// wake-up channel and one reusable deadline timer (ioDir).

// newTCPConn wraps a connected endpoint and its wait queue.
func newTCPConn(s *Stack, wq *waiter.Queue, ep tcpip.Endpoint, dialed bool) *tcpConn {
	c := &tcpConn{wq: wq, ep: ep, s: s, dialed: dialed}
	c.rd.init(wq, waiter.ReadableEvents)
	c.wr.init(wq, waiter.WritableEvents)
	return c
}

// blocked says whether I/O in direction d may go on and, if not, why: the
// connection closed or d's deadline passed.
func (c *tcpConn) blocked(d *ioDir) error {
	switch {
	case c.isClosed():
		return net.ErrClosed
	case d.dl.expired.Load():
		return os.ErrDeadlineExceeded
	}
	return nil
}

// Read reads from the endpoint, blocking until data, end of stream, an
// error or the read deadline.
func (c *tcpConn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if err := c.blocked(&c.rd); err != nil {
			return 0, c.opError("read", err)
		}
		w := tcpip.SliceWriter(b)
		res, terr := c.ep.Read(&w, tcpip.ReadOptions{})
		switch terr.(type) {
		case nil:
			if res.Count > 0 {
				c.ep.ModerateRecvBuf(res.Count) // receive buffer auto-tuning
			}
			return res.Count, nil
		case *tcpip.ErrWouldBlock:
			<-c.rd.wake
		case *tcpip.ErrClosedForReceive:
			if c.isClosed() {
				return 0, c.opError("read", net.ErrClosed)
			}
			return 0, io.EOF
		default:
			return 0, c.opError("read", tcpipErr(terr))
		}
	}
}

// Write queues all of b, waiting for room in the send buffer, unless an
// error or the write deadline stops it; it returns how much was queued.
func (c *tcpConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var (
		r bytes.Reader
		n int
	)
	for {
		if err := c.blocked(&c.wr); err != nil {
			return n, c.opError("write", err)
		}
		r.Reset(b[n:])
		k, terr := c.ep.Write(&r, tcpip.WriteOptions{})
		n += int(k)
		switch terr.(type) {
		case nil:
			if n == len(b) {
				return n, nil
			}
		case *tcpip.ErrWouldBlock:
			<-c.wr.wake
		default:
			return n, c.opError("write", tcpipErr(terr))
		}
	}
}

// Close implements net.Conn: netstack closes the endpoint (a FIN, or a RST
// when unread data is left, RFC 9293 section 3.6) and blocked I/O returns
// net.ErrClosed.
func (c *tcpConn) Close() error {
	if c.closed.Swap(true) {
		return &net.OpError{Op: "close", Net: "tcp", Err: net.ErrClosed}
	}
	c.ep.Close()
	c.wq.EventUnregister(&c.rd.entry)
	c.wq.EventUnregister(&c.wr.entry)
	c.rd.dl.stop()
	c.wr.dl.stop()
	notify(c.rd.wake)
	notify(c.wr.wake)
	return nil
}

// SetDeadline implements net.Conn.
func (c *tcpConn) SetDeadline(t time.Time) error {
	c.rd.dl.set(t)
	c.wr.dl.set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *tcpConn) SetReadDeadline(t time.Time) error { c.rd.dl.set(t); return nil }

// SetWriteDeadline implements net.Conn.
func (c *tcpConn) SetWriteDeadline(t time.Time) error { c.wr.dl.set(t); return nil }

// CloseRead shuts the receiving side down, as (*net.TCPConn).CloseRead.
func (c *tcpConn) CloseRead() error {
	if terr := c.ep.Shutdown(tcpip.ShutdownRead); terr != nil {
		return c.opError("close", tcpipErr(terr))
	}
	return nil
}

// CloseWrite shuts the sending side down (a FIN), as
// (*net.TCPConn).CloseWrite.
func (c *tcpConn) CloseWrite() error {
	if terr := c.ep.Shutdown(tcpip.ShutdownWrite); terr != nil {
		return c.opError("close", tcpipErr(terr))
	}
	return nil
}

// LocalAddr implements net.Conn. A connected endpoint's addresses do not
// change, so they are read once.
func (c *tcpConn) LocalAddr() net.Addr {
	c.addrOnce.Do(c.loadAddrs)
	return c.local
}

// RemoteAddr implements net.Conn.
func (c *tcpConn) RemoteAddr() net.Addr {
	c.addrOnce.Do(c.loadAddrs)
	return c.remote
}

func (c *tcpConn) loadAddrs() {
	if a, err := c.ep.GetLocalAddress(); err == nil {
		c.local = &net.TCPAddr{IP: net.IP(a.Addr.AsSlice()), Port: int(a.Port)}
	}
	if a, err := c.ep.GetRemoteAddress(); err == nil {
		c.remote = &net.TCPAddr{IP: net.IP(a.Addr.AsSlice()), Port: int(a.Port)}
	}
}

// opError wraps err as the net package's connections do.
func (c *tcpConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// tcpConnIO is the state tcpConn's I/O keeps; embedded in tcpConn.
type tcpConnIO struct {
	// rmu and wmu serialize reads and writes: each direction has one
	// wake-up channel, and a Write queues all of its bytes before another
	// starts.
	rmu, wmu sync.Mutex
	rd, wr   ioDir

	addrOnce      sync.Once
	local, remote net.Addr
}
