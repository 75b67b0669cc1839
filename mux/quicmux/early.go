package quicmux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/quic-go/quic-go"
)

// DialEarly opens a client connection to raddr as Dial does, but when
// tlsConf's ClientSessionCache holds a session ticket from the server that
// allows early data, it returns before the handshake completes, as soon as
// the connection can send 0-RTT data (RFC 9001 section 4.6.1): streams
// opened before HandshakeComplete is closed carry it. Without such a ticket
// it returns after the handshake, like Dial.
//
// 0-RTT data can be replayed by an attacker (RFC 9001 section 9.2, RFC 8446
// section 8): only requests that are safe to repeat belong in it, and the
// caller chooses which (package h3 sends GET and HEAD only). Everything
// else waits for the handshake.
//
// If the server rejects the early data (a ticket it cannot use, 0-RTT
// turned off), it discarded everything sent in it, and quic-go resets the
// connection's streams: every stream opened before fails with
// quic.Err0RTTRejected. The HTTP/3 session on it has lost its control
// stream with them, so the connection is of no further use: Conn closes it
// once the handshake completes, with an error wrapping
// quic.Err0RTTRejected (see Rejected0RTT), and the caller sends its
// requests again on another connection. Nothing sent on it reached the
// server's application.
func (t *Transport) DialEarly(ctx context.Context, raddr net.Addr, tlsConf *tls.Config) (*Conn, error) {
	if tlsConf == nil || len(tlsConf.NextProtos) != 1 {
		return nil, errors.New("mux: quic early dial needs a TLS config with one ALPN")
	}
	alpn := tlsConf.NextProtos[0]
	c := newConn(true, slices.Contains(tlsConf.NextProtos, ALPNH3), t.cfg)
	qc, err := t.tr.DialEarly(context.WithValue(ctx, traceKey{}, c), raddr, tlsConf, t.quicConfig())
	if err != nil {
		return nil, fmt.Errorf("mux: quic dial %s: %w", raddr, err)
	}
	c.start(qc, alpn)
	if c.Early() {
		go c.watchEarly()
	}
	return c, nil
}

// Early reports whether the handshake has not completed yet: streams
// opened now go in 0-RTT.
func (c *Conn) Early() bool {
	select {
	case <-c.qc.HandshakeComplete():
		return false
	default:
		return true
	}
}

// HandshakeComplete is closed once the handshake completed (at once for a
// connection from Dial).
func (c *Conn) HandshakeComplete() <-chan struct{} { return c.qc.HandshakeComplete() }

// Resumed reports whether the handshake resumed a session from a ticket
// (RFC 8446 section 2.2) instead of a full one. It waits for the
// handshake to complete.
func (c *Conn) Resumed() bool { return c.qc.ConnectionState().TLS.DidResume }

// Rejected0RTT reports whether the server rejected the connection's early
// data: the connection is closed, or about to be, and whatever its streams
// carried never reached the server's application (RFC 9001 section 4.6.2).
// err, the failure of a request or stream on c, may be the first sign of
// it: quic-go fails the streams as soon as it learns of the rejection,
// before the handshake completes and DialEarly's watcher closes the
// connection. From then on c takes no new streams (AvailStreams is 0).
func (c *Conn) Rejected0RTT(err error) bool {
	if errors.Is(err, quic.Err0RTTRejected) && !c.rejected0RTT.Swap(true) {
		c.mu.Lock()
		c.goingAway = true
		c.mu.Unlock()
	}
	return c.rejected0RTT.Load()
}

// watchEarly waits for the handshake of an early connection and closes it
// if the server rejected its 0-RTT data (see DialEarly). It ends with the
// handshake or the connection.
func (c *Conn) watchEarly() {
	select {
	case <-c.qc.HandshakeComplete():
	case <-c.done:
		return
	}
	if c.qc.ConnectionState().Used0RTT {
		return
	}
	c.rejected0RTT.Store(true)
	c.closeWith(fmt.Errorf("mux: quic connection to %s: %w", c.qc.RemoteAddr(), quic.Err0RTTRejected))
}
