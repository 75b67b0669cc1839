package frontend

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/xdpnet/xdpnet/internal/proxyproto"
)

// Results of xdpnet_proxy_protocol_total.
const (
	ProxyProxied   = "proxied"   // a trusted source's header gave the client address
	ProxyLocal     = "local"     // a trusted source's LOCAL (or address-less) header: its own address stays
	ProxyUntrusted = "untrusted" // not a trusted source: served as is, nothing read as a header
	ProxyMissing   = "missing"   // a trusted source sent no v2 signature: closed
	ProxyMalformed = "malformed" // a trusted source's header was invalid or cut short: closed
	ProxyTimeout   = "timeout"   // a trusted source's header took longer than proxy_protocol.timeout: closed
)

// proxyListener reads the PROXY protocol v2 header of connections from
// trusted sources before the server sees them. Each such connection's
// header is read in a goroutine of its own, under the frontend's
// proxy_protocol.timeout, so that one slow balancer connection does not
// hold up the accept loop; connections from other sources are passed on
// at once. Close stops the accept loop, closes the connections whose
// header is still awaited and joins every goroutine.
type proxyListener struct {
	net.Listener
	fe    *Frontend
	ready chan net.Conn
	stop  chan struct{}

	mu      sync.Mutex
	err     error                 // the accept loop's end
	pending map[net.Conn]struct{} // header being read
	wg      sync.WaitGroup
	once    sync.Once
}

// proxyListen returns ln, wrapped when the frontend reads PROXY headers.
func (fe *Frontend) proxyListen(ln net.Listener) net.Listener {
	if fe.cfg.ProxyProtocol == nil {
		return ln
	}
	l := &proxyListener{Listener: ln, fe: fe, ready: make(chan net.Conn), stop: make(chan struct{}),
		pending: map[net.Conn]struct{}{}}
	l.wg.Go(l.acceptLoop)
	return l
}

func (l *proxyListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			l.once.Do(func() { close(l.stop) })
			return
		}
		ap, _ := addrPort(c.RemoteAddr())
		if !l.fe.cfg.ProxyProtocol.Trusts(ap.Addr()) {
			l.count(ProxyUntrusted)
			l.hand(c)
			continue
		}
		l.mu.Lock()
		select {
		case <-l.stop:
			l.mu.Unlock()
			c.Close()
			continue
		default:
		}
		l.pending[c] = struct{}{}
		l.mu.Unlock()
		l.wg.Go(func() { l.readHeader(c) })
	}
}

// hand passes c to Accept, or closes it when the listener closes first.
func (l *proxyListener) hand(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.stop:
		c.Close()
	}
}

func (l *proxyListener) count(result string) {
	l.fe.env.Counters.ProxyProtocol.WithLabelValues(l.fe.cfg.Name, result).Inc()
}

// readHeader reads c's header and hands c on with the client address it
// carries, or closes it (counted).
func (l *proxyListener) readHeader(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(l.fe.cfg.ProxyProtocol.Timeout.D()))
	h, err := proxyproto.Read(c)
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
	if err == nil {
		err = c.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var ne net.Error
		switch {
		case errors.Is(err, proxyproto.ErrNoSignature):
			l.count(ProxyMissing)
		case errors.As(err, &ne) && ne.Timeout():
			l.count(ProxyTimeout)
		default:
			l.count(ProxyMalformed)
		}
		l.fe.env.Log.Debug("PROXY protocol header refused; connection closed", "frontend", l.fe.cfg.Name,
			"peer", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	if h.Command != proxyproto.Proxy || !h.Source.IsValid() {
		l.count(ProxyLocal)
		l.hand(c)
		return
	}
	l.count(ProxyProxied)
	l.hand(&proxiedConn{Conn: c, client: net.TCPAddrFromAddrPort(h.Source), dest: net.TCPAddrFromAddrPort(h.Destination)})
}

// Accept returns the next connection whose header (if it owes one) was
// read.
func (l *proxyListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.stop:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.err == nil { // Close came before the accept loop's error
			return nil, net.ErrClosed
		}
		return nil, l.err
	}
}

// Close closes the listener and the connections still owing a header, and
// joins the goroutines.
func (l *proxyListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.once.Do(func() { close(l.stop) })
	for c := range l.pending {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

// proxiedConn is a client connection whose client address came from a
// trusted PROXY protocol header: RemoteAddr is that address, for the
// HTTP server (Request.RemoteAddr, hence X-Forwarded-For and access
// logs), hash balancing and tunnels' headers, and LocalAddr the address
// the client reached (the balancer's); NetConn is the connection itself,
// whose addresses choose the worker (workerAddrs).
type proxiedConn struct {
	net.Conn
	client, dest net.Addr
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.client }
func (c *proxiedConn) LocalAddr() net.Addr  { return c.dest }

// sendProxyHeader writes the PROXY protocol v2 header of client
// connection c (its client and the address it reached) to w, the first
// bytes of its tunnel (backends' send_proxy_protocol).
func sendProxyHeader(w io.Writer, c net.Conn) error {
	src, _ := addrPort(c.RemoteAddr())
	dst, _ := addrPort(c.LocalAddr())
	_, err := w.Write(proxyproto.Header{Command: proxyproto.Proxy, Source: src, Destination: dst}.Append(nil))
	return err
}

// NetConn returns the connection from the balancer.
func (c *proxiedConn) NetConn() net.Conn { return c.Conn }

// workerAddrs are the addresses of the TCP connection under c (past TLS
// and a PROXY header), which say on which RX queue it arrived
// (pickWorker).
func workerAddrs(c net.Conn) (local, remote net.Addr) {
	for {
		if p, ok := c.(*proxiedConn); ok {
			c = p.Conn
			break
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	return c.LocalAddr(), c.RemoteAddr()
}
