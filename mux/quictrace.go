package mux

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
// the only place where it exposes the peer's stream limit. QUICConn installs
// a recorder that reads the few events it needs and drops the rest.

// traceKey carries the *QUICConn a connection's events belong to, in the
// context quic-go hands to Config.Tracer.
type traceKey struct{}

// bidiStreamType is the value of quic-go's protocol.StreamTypeBidi (an
// internal type): MAX_STREAMS frames of this type limit bidirectional
// streams (RFC 9000 section 19.11, frame type 0x12).
const bidiStreamType = 1

func traceFromContext(ctx context.Context, _ bool, _ quic.ConnectionID) qlogwriter.Trace {
	c, _ := ctx.Value(traceKey{}).(*QUICConn)
	if c == nil {
		return nil
	}
	return &connTrace{c: c}
}

// connTrace is the trace of one quic-go connection (a dial that switches
// QUIC version makes a new one). It hands the recorder to its first
// producer only: quic-go's connection, which asks while it is being made.
// Later producers are quic-go's HTTP/3 layer (HTTP3Client, or an
// http3.Server on QUIC()), which finds the trace through
// quic.Conn.QlogTrace and, given a recorder, would build an event for every
// HTTP/3 frame it writes or parses, header fields included; QUICConn needs
// none of them, and without a recorder HTTP/3 builds none.
type connTrace struct {
	c      *QUICConn
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
type connRecorder QUICConn

func (r *connRecorder) RecordEvent(ev qlogwriter.Event) {
	c := (*QUICConn)(r)
	switch e := ev.(type) {
	case qlog.ParametersSet:
		if e.Initiator == qlog.InitiatorRemote {
			c.raiseLimit(e.InitialMaxStreamsBidi)
		}
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

func (c *QUICConn) pingSent(id quic.StreamID, pn qlog.PacketNumber) {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	for _, p := range c.pings {
		if p.stream == id {
			p.sent = append(p.sent, pn)
		}
	}
}

func (c *QUICConn) pingAcked(ack *qlog.AckFrame) {
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

// Ping proves the peer alive: it sends an ack-eliciting packet (a short
// unidirectional stream of a reserved type that HTTP/3 peers ignore, RFC
// 9114 section 6.2.3) and returns once the peer acknowledged that packet.
// quic-go has no public PING frame; this costs one unidirectional stream of
// the peer's credit, which returns as soon as the peer discards it.
func (c *QUICConn) Ping(ctx context.Context) error {
	if err := c.Err(); err != nil {
		return err
	}
	s, err := c.qc.OpenUniStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("mux: ping: %w", err)
	}
	p := &pendingPing{stream: s.StreamID(), done: make(chan struct{})}
	c.pingMu.Lock()
	c.pings = append(c.pings, p)
	c.pingMu.Unlock()
	c.pingActive.Add(1)
	_, err = s.Write([]byte{pingStreamType})
	if err == nil {
		err = s.Close()
	}
	if err != nil {
		c.dropPing(p)
		var serr *quic.StreamError
		if errors.As(err, &serr) && serr.Remote || errors.As(context.Cause(s.Context()), &serr) && serr.Remote {
			// The peer read the stream type and stopped the stream
			// (STOP_SENDING): it answered, so it is alive.
			return nil
		}
		return fmt.Errorf("mux: ping: %w", err)
	}
	select {
	case <-p.done:
		if err := c.Err(); err != nil {
			return err
		}
		return nil
	case <-ctx.Done():
		c.dropPing(p)
		return fmt.Errorf("mux: ping: %w", context.Cause(ctx))
	}
}

func (c *QUICConn) dropPing(p *pendingPing) {
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
