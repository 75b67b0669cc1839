package config

// QUIC connections in the memory budget (issue 20): quic-go buffers, per
// connection, the data it received and its application has not read yet,
// up to the connection's flow control window (RFC 9000 section 4.1: a
// peer may not send beyond it), and the data it sent until the peer
// acknowledges it (kept for retransmission, RFC 9002 section 2), which the
// peer's window and the congestion window bound. The engine sets the
// first through buffers.quic_receive and reserves an allowance for the
// second, buffers.quic_send.

// QUIC window bounds: the defaults of buffers.quic_receive, and quic-go's
// own defaults for a stream's window (protocol.DefaultInitialMaxStreamData
// and DefaultMaxReceiveStreamFlowControlWindow), kept within the
// connection's.
const (
	quicWindowDefault    = 512 << 10
	quicWindowMax        = 8 << 20
	quicStreamWindow     = 512 << 10
	quicStreamWindowMax  = 6 << 20
	quicWindowFloor      = 16 << 10 // a few packets: below it a connection crawls
	quicWindowCeiling    = 1 << 30
	quicSendAllowanceMax = 1 << 30
)

func (b *Buffers) setQUICDefaults() {
	if b.QUICReceive.Default == 0 {
		b.QUICReceive.Default = quicWindowDefault
		if m := b.QUICReceive.Max; m != 0 {
			// A max set alone below the default is the window.
			b.QUICReceive.Default = min(quicWindowDefault, m)
		}
	}
	if b.QUICReceive.Max == 0 {
		b.QUICReceive.Max = max(quicWindowMax, b.QUICReceive.Default)
	}
	if b.QUICSend == 0 {
		b.QUICSend = b.QUICReceive.Max
	}
}

// QUICWindows are the receive flow control windows of the engine's QUIC
// connections (quic.Config's InitialStreamReceiveWindow,
// MaxStreamReceiveWindow, InitialConnectionReceiveWindow and
// MaxConnectionReceiveWindow): buffers.quic_receive for the connection,
// quic-go's defaults for a stream within them.
type QUICWindows struct {
	Stream, StreamMax, Conn, ConnMax uint64
}

// QUICWindows returns the windows buffers.quic_receive sets.
func (c *Config) QUICWindows() QUICWindows {
	r := c.Buffers.QUICReceive
	return QUICWindows{
		Stream:    uint64(min(quicStreamWindow, r.Default)),
		StreamMax: uint64(min(quicStreamWindowMax, r.Max)),
		Conn:      uint64(r.Default),
		ConnMax:   uint64(r.Max),
	}
}

// QUICReservation is what a QUIC connection reserves in the memory
// budget, on either data plane (quic-go's buffers are the process's, not
// the kernel's): quic_receive.max, the most it buffers of what it
// receives, plus quic_send, the allowance for what it sent and awaits the
// acknowledgement of.
func (c *Config) QUICReservation() int64 {
	return int64(c.Buffers.QUICReceive.Max + c.Buffers.QUICSend)
}

// usesQUIC reports whether the engine runs QUIC connections: an h3
// frontend, or an h3 or raw backend.
func (c *Config) usesQUIC() bool {
	for _, f := range c.Frontends {
		if f.Protocol == ProtoH3 {
			return true
		}
	}
	for _, b := range c.Backends {
		if b.Protocol == BackendH3 || b.Protocol == BackendRaw {
			return true
		}
	}
	return false
}

// validateQUICBudget checks buffers.quic_receive and quic_send and, when
// buffers.memory bounds the budget and the engine runs QUIC connections,
// that it leaves room for one QUIC connection's reservation beside two
// payload buffers (else every QUIC connection would be refused).
func (c *Config) validateQUICBudget(bad func(field, format string, args ...any)) {
	r := c.Buffers.QUICReceive
	if r.Default < quicWindowFloor || r.Default > r.Max || r.Max > quicWindowCeiling {
		bad("buffers.quic_receive", "default %d, max %d: want %d <= default <= max <= %d", r.Default, r.Max, quicWindowFloor, quicWindowCeiling)
	}
	if s := c.Buffers.QUICSend; s > quicSendAllowanceMax {
		bad("buffers.quic_send", "%d is outside 0..%d", s, quicSendAllowanceMax)
	}
	if c.Buffers.Memory == 0 || !c.usesQUIC() {
		return
	}
	if umem, more := c.UMEMBytes(), 2*PayloadBufferSize+c.QUICReservation(); int64(c.Buffers.Memory) < umem+more {
		bad("buffers.memory", "%d bytes: the UMEM takes %d; at least %d more are needed for two payload buffers and one QUIC connection (quic_receive.max + quic_send)",
			c.Buffers.Memory, umem, more)
	}
}
