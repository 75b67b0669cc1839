package quicmux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Config configures the QUIC connections (RFC 9000) of a Transport. The
// zero value is usable.
type Config struct {
	// HandshakeTimeout bounds the handshake; 0 means 5s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that received nothing for this long
	// (RFC 9000 section 10.1; the smaller of both peers' values applies);
	// 0 means 30s.
	IdleTimeout time.Duration
	// KeepAlive sends a PING when nothing else was sent for this long, so
	// that an idle pooled connection stays open (and NAT bindings with it);
	// 0 means 10s, negative turns keep-alive off. quic-go caps it at half the
	// idle timeout.
	KeepAlive time.Duration
	// MaxIncomingStreams is the number of concurrent bidirectional streams
	// the peer may open (the MAX_STREAMS limit we grant, RFC 9000 section
	// 4.6); 0 means 100, negative allows none.
	MaxIncomingStreams int64
	// Allow0RTT lets a server accept 0-RTT data (RFC 9001 section 4.6) and
	// hand out connections before their handshake completes. Off by
	// default: 0-RTT requests can be replayed (RFC 9001 section 9.2), so
	// only idempotent requests belong there. Clients made here never send
	// 0-RTT.
	Allow0RTT bool
	// InitialPacketSize is the size of the first packets. quic-go only runs
	// path MTU discovery on kernel sockets that can set the DF bit; on a
	// netstack socket the packets would stay at 1280 bytes for the whole
	// connection. Set this to the path MTU minus the IP and UDP headers
	// (28 bytes for IPv4, 48 for IPv6) when the link's MTU is known;
	// quic-go caps it at 1452, which a 1500-byte link allows for both. 0
	// means quic-go's default.
	InitialPacketSize uint16
	// MaxStreamReceiveWindow and MaxConnectionReceiveWindow bound the flow
	// control windows (RFC 9000 section 4), which quic-go auto-tunes from
	// InitialStreamReceiveWindow and InitialConnectionReceiveWindow; 0
	// means quic-go's defaults.
	InitialStreamReceiveWindow     uint64
	MaxStreamReceiveWindow         uint64
	InitialConnectionReceiveWindow uint64
	MaxConnectionReceiveWindow     uint64
	// ReadyStreams is how many bidirectional streams a connection keeps
	// opened ahead of OpenStream, within the peer's credit (see Conn);
	// AvailStreams counts no more than this. 0 means 16. A ready stream
	// costs about 1.7 KB (BenchmarkQUICReadyStream) and nothing on the
	// wire. HTTP/3 client connections do without.
	ReadyStreams int
}

const (
	defaultKeepAlive    = 10 * time.Second
	defaultReadyStreams = 16
	// pingStreamType is the type of the unidirectional stream Ping opens: a
	// reserved HTTP/3 stream type (0x1f*N + 0x21, RFC 9114 section 6.2.3)
	// that HTTP/3 peers must ignore. Raw-ALPN peers stop every
	// unidirectional stream (see StopUniStreams).
	pingStreamType = 0x21
)

func (cfg Config) quicConfig() *quic.Config {
	keepAlive := cfg.KeepAlive
	switch {
	case keepAlive == 0:
		keepAlive = defaultKeepAlive
	case keepAlive < 0:
		keepAlive = 0
	}
	return &quic.Config{
		HandshakeIdleTimeout:           cfg.HandshakeTimeout,
		MaxIdleTimeout:                 cfg.IdleTimeout,
		KeepAlivePeriod:                keepAlive,
		MaxIncomingStreams:             cfg.MaxIncomingStreams,
		Allow0RTT:                      cfg.Allow0RTT,
		InitialPacketSize:              cfg.InitialPacketSize,
		InitialStreamReceiveWindow:     cfg.InitialStreamReceiveWindow,
		MaxStreamReceiveWindow:         cfg.MaxStreamReceiveWindow,
		InitialConnectionReceiveWindow: cfg.InitialConnectionReceiveWindow,
		MaxConnectionReceiveWindow:     cfg.MaxConnectionReceiveWindow,
		Tracer:                         traceFromContext,
	}
}

// Transport runs QUIC connections over one UDP socket: a netstack socket
// (stack.ListenUDP) or a kernel one. Many client connections, and a listener,
// can share it; packets are demultiplexed by connection id.
type Transport struct {
	tr      *quic.Transport
	pc      net.PacketConn
	seg     *segmentingPacketConn // wraps pc unless pc is a kernel socket
	cfg     Config
	dropped atomic.Uint64
	// unreachable counts ICMP errors the socket reported (see
	// boundedPacketConn.ReadFrom).
	unreachable atomic.Uint64
	bounded     *boundedPacketConn
	// unreachMu guards unreachCh, closed and replaced at each ICMP error.
	unreachMu sync.Mutex
	unreachCh chan struct{}

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
	done      chan struct{} // closed by Close
}

// NewTransport takes ownership of pc: Close closes it. A socket that is
// not a kernel UDP socket (the netstack's) gets its writes bounded in time
// (see boundedPacketConn) and quic-go's batched send path (see
// segmentingPacketConn); if the process is out of file descriptors for the
// latter's placeholder socket, quic-go sends one datagram per call instead.
func NewTransport(pc net.PacketConn, cfg Config) *Transport {
	t := &Transport{pc: pc, cfg: cfg, unreachCh: make(chan struct{}), done: make(chan struct{})}
	qpc := pc
	if _, kernel := pc.(quic.OOBCapablePacketConn); !kernel {
		b := &boundedPacketConn{PacketConn: pc, dropped: &t.dropped, unreachable: &t.unreachable, notify: t.signalUnreachable}
		qpc, t.bounded = b, b
		if s, err := newSegmentingPacketConn(b); err == nil {
			qpc, t.seg = s, s
		}
	}
	t.tr = &quic.Transport{Conn: qpc}
	return t
}

// quicConfig is cfg's quic-go configuration for this transport's socket.
// quic-go runs path MTU discovery (RFC 8899) where the socket claims the DF
// bit, as segmentingPacketConn's placeholder does for the netstack socket:
// turn it off there, as quic-go does by itself on any other non-kernel
// socket (Config.InitialPacketSize sets the size instead).
func (t *Transport) quicConfig() *quic.Config {
	qc := t.cfg.quicConfig()
	qc.DisablePathMTUDiscovery = t.seg != nil
	return qc
}

// UnreachableNotify returns a channel closed at the next ICMP error the
// socket reports. On a socket connected to one server, that server (or the
// path to it) refused or dropped a packet: a dial in flight to it can give
// up at once instead of waiting out its handshake timeout.
func (t *Transport) UnreachableNotify() <-chan struct{} {
	t.unreachMu.Lock()
	defer t.unreachMu.Unlock()
	return t.unreachCh
}

func (t *Transport) signalUnreachable() {
	t.unreachMu.Lock()
	close(t.unreachCh)
	t.unreachCh = make(chan struct{})
	t.unreachMu.Unlock()
}

// Done is closed by Close.
func (t *Transport) Done() <-chan struct{} { return t.done }

// Err is nil while the transport can carry connections; after Close, or
// once its socket failed for good, it says why, and the transport must be
// replaced: quic-go ends a transport on a read error.
func (t *Transport) Err() error {
	if t.closed.Load() {
		return net.ErrClosed
	}
	if t.bounded != nil {
		if err := t.bounded.readErr.Load(); err != nil {
			return fmt.Errorf("mux: quic transport socket: %w", *err)
		}
	}
	return nil
}

// Dial opens a client connection to raddr and completes the handshake.
// tlsConf must name one ALPN (ALPNH3 or ALPNRaw, see ClientTLS).
func (t *Transport) Dial(ctx context.Context, raddr net.Addr, tlsConf *tls.Config) (*Conn, error) {
	if tlsConf == nil || len(tlsConf.NextProtos) == 0 {
		return nil, errors.New("mux: quic dial needs a TLS config with an ALPN")
	}
	c := newConn(true, slices.Contains(tlsConf.NextProtos, ALPNH3), t.cfg)
	qc, err := t.tr.Dial(context.WithValue(ctx, traceKey{}, c), raddr, tlsConf, t.quicConfig())
	if err != nil {
		return nil, fmt.Errorf("mux: quic dial %s: %w", raddr, err)
	}
	c.start(qc, "")
	return c, nil
}

// Listen accepts server connections on the transport. tlsConf offers the
// ALPNs the server speaks (see ServerTLS).
func (t *Transport) Listen(tlsConf *tls.Config) (*Listener, error) {
	if tlsConf == nil || len(tlsConf.NextProtos) == 0 {
		return nil, errors.New("mux: quic listen needs a TLS config with ALPNs")
	}
	t.tr.ConnContext = func(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
		return context.WithValue(ctx, traceKey{}, newConn(false, false, t.cfg)), nil
	}
	var ln quicListener
	var err error
	if t.cfg.Allow0RTT {
		ln, err = t.tr.ListenEarly(tlsConf, t.quicConfig())
	} else {
		ln, err = t.tr.Listen(tlsConf, t.quicConfig())
	}
	if err != nil {
		return nil, fmt.Errorf("mux: quic listen: %w", err)
	}
	return &Listener{ln: ln, early: t.cfg.Allow0RTT}, nil
}

// Close closes every connection of the transport and its socket.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		close(t.done)
		t.closeErr = t.tr.Close()
		var pc io.Closer = t.pc
		if t.seg != nil {
			pc = t.seg
		}
		if err := pc.Close(); err != nil && t.closeErr == nil && !errors.Is(err, net.ErrClosed) {
			t.closeErr = err
		}
	})
	return t.closeErr
}

// Listener accepts server-side QUIC connections.
type Listener struct {
	ln quicListener
	// early: Config.Allow0RTT, connections are handed out before their
	// handshake completes, so that 0-RTT streams are served at once.
	early bool
}

// quicListener is *quic.Listener or *quic.EarlyListener.
type quicListener interface {
	Accept(context.Context) (*quic.Conn, error)
	Close() error
	Addr() net.Addr
}

// Accept waits for the next connection whose handshake completed (with
// Config.Allow0RTT: whose client's transport parameters arrived, so that
// 0-RTT streams are served at once; the server's own stream limit is known
// from them either way).
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	qc, err := l.ln.Accept(ctx)
	if err != nil {
		return nil, fmt.Errorf("mux: quic accept: %w", err)
	}
	c, ok := qc.Context().Value(traceKey{}).(*Conn)
	if !ok {
		// Not possible: Listen's ConnContext sets it for every connection.
		qc.CloseWithError(0, "")
		return nil, errors.New("mux: quic accept: connection without credit tracker")
	}
	if !l.early {
		// quic-go's Listener returns handshaken connections; this only
		// guards the invariant start relies on.
		select {
		case <-qc.HandshakeComplete():
		case <-qc.Context().Done():
			return nil, fmt.Errorf("mux: quic accept: %w", context.Cause(qc.Context()))
		case <-ctx.Done():
			qc.CloseWithError(0, "")
			return nil, ctx.Err()
		}
	}
	c.start(qc, "")
	return c, nil
}

// Addr is the listening socket's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting; the transport and the connections it accepted
// stay open.
func (l *Listener) Close() error { return l.ln.Close() }
