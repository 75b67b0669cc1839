package quicmux

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// quic-go reports transport parameters and frames as qlog events; they are
// the only place where it exposes the peer's stream limit. An HTTP/3 client
// Conn installs a recorder that reads the few events it needs and drops
// the rest (see Conn).

// traceKey carries the *Conn a connection's events belong to, in the
// context quic-go hands to Config.Tracer.
type traceKey struct{}

// bidiStreamType is the value of quic-go's protocol.StreamTypeBidi (an
// internal type): MAX_STREAMS frames of this type limit bidirectional
// streams (RFC 9000 section 19.11, frame type 0x12).
const bidiStreamType = 1

func traceFromContext(ctx context.Context, _ bool, _ quic.ConnectionID) qlogwriter.Trace {
	c, _ := ctx.Value(traceKey{}).(*Conn)
	if c == nil || !c.events {
		return nil
	}
	return &connTrace{c: c}
}

// connTrace is the trace of one quic-go connection (a dial that switches
// QUIC version makes a new one). It hands the recorder to its first
// producer only: quic-go's connection, which asks while it is being made.
// Later producers are quic-go's HTTP/3 layer (package h3's Client,
// or an http3.Server on QUIC()), which finds the trace through
// quic.Conn.QlogTrace and, given a recorder, would build an event for every
// HTTP/3 frame it writes or parses, header fields included; Conn needs
// none of them, and without a recorder HTTP/3 builds none.
type connTrace struct {
	c      *Conn
	handed atomic.Bool
}

func (t *connTrace) AddProducer() qlogwriter.Recorder {
	if t.handed.Swap(true) {
		return nil
	}
	return (*connRecorder)(t.c)
}

// connRecorder is called on quic-go's connection goroutine: it must be
// quick and must not block.
type connRecorder Conn

func (r *connRecorder) RecordEvent(ev qlogwriter.Event) {
	c := (*Conn)(r)
	switch e := ev.(type) {
	case qlog.ParametersSet:
		if e.Initiator == qlog.InitiatorRemote {
			c.raiseLimit(e.InitialMaxStreamsBidi)
		}
	case qlog.ParametersRestored:
		// An early connection (DialEarly): until the handshake completes,
		// quic-go opens streams within the limits remembered with the
		// session ticket (RFC 9000 section 7.4.1). A server that accepts
		// 0-RTT must not lower them (quic-go closes the connection if it
		// does), and one that rejects it makes the connection unusable
		// here (see DialEarly), so the limit only ever rises. The
		// server's new limit (ParametersSet above) arrives before quic-go
		// applies it at the end of the handshake: a request that takes
		// credit in between waits in quic-go's OpenStreamSync for that
		// instant, it never fails.
		c.raiseLimit(e.InitialMaxStreamsBidi)
	case qlog.PacketReceived:
		for _, f := range e.Frames {
			switch fr := f.Frame.(type) {
			case *qlog.MaxStreamsFrame:
				if fr.Type == bidiStreamType {
					c.raiseLimit(int64(fr.MaxStreamNum))
				}
			case *qlog.AckFrame:
				if c.pingActive.Load() > 0 {
					c.pingAcked(fr)
				}
			}
		}
	case qlog.PacketSent:
		if c.pingActive.Load() > 0 && e.Header.PacketType == qlog.PacketType1RTT {
			for _, f := range e.Frames {
				if sf, ok := f.Frame.(*qlog.StreamFrame); ok {
					c.pingSent(sf.StreamID, e.Header.PacketNumber)
				}
			}
		}
	}
}

func (r *connRecorder) Close() error { return nil }

// pendingPing is one Ping waiting for the ACK of a packet that carried its
// stream (RFC 9000 section 13.2: an ack-eliciting packet is acknowledged).
type pendingPing struct {
	stream quic.StreamID
	sent   []qlog.PacketNumber
	done   chan struct{}
	once   sync.Once
}

func (p *pendingPing) finish() { p.once.Do(func() { close(p.done) }) }

func (c *Conn) pingSent(id quic.StreamID, pn qlog.PacketNumber) {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	for _, p := range c.pings {
		if p.stream == id {
			p.sent = append(p.sent, pn)
		}
	}
}

func (c *Conn) pingAcked(ack *qlog.AckFrame) {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	keep := c.pings[:0]
	for _, p := range c.pings {
		acked := false
		for _, pn := range p.sent {
			if ack.AcksPacket(pn) {
				acked = true
				break
			}
		}
		if acked {
			p.finish()
			c.pingActive.Add(-1)
		} else {
			keep = append(keep, p)
		}
	}
	clear(c.pings[len(keep):])
	c.pings = keep
}

// Ping proves the peer alive with a round trip. quic-go has no public PING
// frame, so Ping opens a unidirectional stream of a reserved type that
// HTTP/3 peers ignore (RFC 9114 section 6.2.3), sends the type, and returns
// at the first answer: the peer stopping the stream (STOP_SENDING, RFC 9000
// section 3.5), which raw-ALPN peers do for every unidirectional stream and
// quic-go's HTTP/3 for every unknown type, or, on an HTTP/3 client
// connection, the ACK of a packet that carried the stream (section 13.2),
// which the credit-event recorder sees. The stream is reset at the end, so
// its credit returns to the peer either way.
func (c *Conn) Ping(ctx context.Context) error {
	if err := c.Err(); err != nil {
		return err
	}
	s, err := c.qc.OpenUniStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("mux: ping: %w", err)
	}
	defer s.CancelWrite(quic.StreamErrorCode(c.noError))
	var acked chan struct{} // stays nil without a recorder
	if c.events {
		p := &pendingPing{stream: s.StreamID(), done: make(chan struct{})}
		c.pingMu.Lock()
		c.pings = append(c.pings, p)
		c.pingMu.Unlock()
		c.pingActive.Add(1)
		defer c.dropPing(p)
		acked = p.done
	}
	if _, err := s.Write([]byte{pingStreamType}); err != nil {
		if stoppedByPeer(err) {
			return nil
		}
		return fmt.Errorf("mux: ping: %w", err)
	}
	select {
	case <-acked:
		// die finishes pending pings too.
		return c.Err()
	case <-s.Context().Done():
		if err := context.Cause(s.Context()); !stoppedByPeer(err) {
			return fmt.Errorf("mux: ping: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mux: ping: %w", context.Cause(ctx))
	}
}

// stoppedByPeer reports whether err is the peer's STOP_SENDING: it read the
// stream and answered.
func stoppedByPeer(err error) bool {
	var serr *quic.StreamError
	return errors.As(err, &serr) && serr.Remote
}

// StopUniStreams answers the peer's pings on a raw-ALPN connection: it stops
// (STOP_SENDING, error code 0) every unidirectional stream the peer opens,
// which is all a raw-ALPN peer does with them, until the connection ends.
// Conn runs it on its own raw connections; a raw-ALPN server built on
// quic-go directly runs it beside its stream accept loop.
func StopUniStreams(qc *quic.Conn) {
	for {
		s, err := qc.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		s.CancelRead(0)
	}
}

func (c *Conn) dropPing(p *pendingPing) {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	for i, q := range c.pings {
		if q == p {
			c.pings = append(c.pings[:i], c.pings[i+1:]...)
			c.pingActive.Add(-1)
			return
		}
	}
}
