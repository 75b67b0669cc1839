package mux

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Kind names the wire protocol of a multiplexed connection. It is part of a
// backend connection's identity: reuse/ never hands a QUIC connection to a
// caller that asked for an HTTP/2 one.
type Kind uint8

const (
	// KindQUIC is a QUIC connection (RFC 9000) carrying one bidirectional
	// stream per request or per tunnelled TCP connection.
	KindQUIC Kind = iota + 1
	// KindHTTP2 is an HTTP/2 connection over TCP (RFC 9113), with or
	// without TLS, carrying one stream per request.
	KindHTTP2
	// KindHTTP1 is an HTTP/1.1 connection over TCP (RFC 9112), with or
	// without TLS: one request at a time.
	KindHTTP1
)

func (k Kind) String() string {
	switch k {
	case KindQUIC:
		return "quic"
	case KindHTTP2:
		return "http2"
	case KindHTTP1:
		return "http1"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

var (
	// ErrNoCredit is returned by OpenStream when the connection has no stream
	// credit left and the context ended before the peer granted more.
	ErrNoCredit = errors.New("mux: no stream credit")
	// ErrGoingAway is returned by OpenStream after Shutdown began: the
	// connection finishes its streams but takes no new ones. It wraps
	// net.ErrClosed so callers that test for a closed connection match it.
	ErrGoingAway = fmt.Errorf("mux: connection going away: %w", net.ErrClosed)
)

// Conn is one multiplexed connection: a QUIC connection, or an HTTP/2 or
// HTTP/1.1 connection over TCP (HTTP/1.1 being the one-stream case). Its methods are safe for concurrent use.
//
// The stream accounting follows HAProxy's mux operations avail_streams and
// used_streams: AvailStreams is the number of streams that OpenStream can open
// now without waiting for the peer (for QUIC, the peer's MAX_STREAMS limit,
// RFC 9000 section 4.6, minus the streams opened so far; on raw-ALPN
// connections at most Config.ReadyStreams of it), and UsedStreams the
// number of streams open on this side. A caller that saw AvailStreams() > 0
// and calls OpenStream before anyone else takes that credit gets a stream, never
// a stream-limit error.
type Conn interface {
	// OpenStream opens a bidirectional stream. With no credit left it waits
	// for the peer to grant more until ctx ends (then ErrNoCredit wrapped with
	// the context's error). After Shutdown it fails with ErrGoingAway; on a
	// dead connection with the error that killed it.
	OpenStream(ctx context.Context) (Stream, error)
	// AvailStreams is the number of streams that can be opened now without
	// waiting; 0 on a dead or shutting down connection.
	AvailStreams() int
	// UsedStreams is the number of streams opened by this side and not yet
	// finished in both directions.
	UsedStreams() int
	// SetWatcher registers w to be told of credit and death. One watcher per
	// connection; a later call replaces the earlier one, nil removes it.
	SetWatcher(w Watcher)
	// Ping checks liveness with a round trip (a QUIC PING frame, RFC 9000
	// section 19.2, or an HTTP/2 PING, RFC 9113 section 6.7) and returns
	// when it is acknowledged. HTTP/1.1 has no round trip that is not a
	// request; its Ping says what it can (see package httpmux).
	Ping(ctx context.Context) error
	// Alive reports whether the connection can still carry streams: not
	// closed, not failed, not shutting down.
	Alive() bool
	// Done is closed once the connection is dead; Err then says why.
	Done() <-chan struct{}
	// Err is nil while the connection lives, else the reason it died.
	Err() error
	// Shutdown closes gracefully: no new streams, open ones finish; it
	// returns when they have finished or ctx ends (then it closes hard).
	Shutdown(ctx context.Context) error
	// Close closes at once; open streams fail with net.ErrClosed.
	Close() error
	// Kind tells the wire protocol.
	Kind() Kind
	// LocalAddr and RemoteAddr are the addresses of the underlying socket.
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
}

// Watcher is told of a connection's state changes. Its methods may be called
// from any goroutine, never while the connection holds a lock, and must not
// block: reuse/ uses them to move a connection between its trees.
type Watcher interface {
	// StreamCredit reports that AvailStreams went up: a stream finished, or
	// the peer raised its limit (a QUIC MAX_STREAMS frame).
	StreamCredit(c Conn)
	// ConnDead reports that c died or was closed; err is c.Err().
	ConnDead(c Conn, err error)
}

// Stream is one bidirectional stream of a Conn. It behaves like a net.Conn
// with half-close: CloseWrite sends end of stream (QUIC FIN) and reads go on;
// Close ends both directions. Its credit returns to the Conn once both
// directions are finished.
type Stream interface {
	net.Conn
	// CloseWrite half-closes: the peer reads io.EOF after the data written.
	CloseWrite() error
	// ID is the stream id on the wire (RFC 9000 section 2.1 for QUIC).
	ID() uint64
	// Reset abandons both directions at once: data not yet delivered is
	// discarded and the peer learns the stream was cut, not finished (QUIC
	// RESET_STREAM and STOP_SENDING, RFC 9000 sections 3.2 and 3.5), so a
	// truncated transfer never looks complete. Unlike Close it may be
	// called while another goroutine is blocked in Read or Write: both
	// return an error at once.
	Reset() error
}
