package frontend

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/engine/backend"
	"github.com/xdpnet/xdpnet/engine/config"
)

// QUICBudget reserves, in the memory budget, what quic-go may buffer for
// each QUIC connection (issue 20): the h3 frontends' client connections
// from their first Initial packet (quic.Transport.ConnContext, before the
// handshake) and the h3 and raw backend connections the engine dials,
// until the connection ends whichever way (quic-go ends its context then:
// closed, idle timeout, failed handshake, transport closed by a drain).
// A connection reserves Conn, config.QUICReservation: its connection
// receive window's ceiling, which bounds what it holds of the data it
// received (RFC 9000 section 4.1), plus the allowance for what it sent
// and awaits acknowledgement of. It shares the pool, and its FIFO, with
// the TCP reservations (TCPBudget) and the payload buffers.
type QUICBudget struct {
	// Pool is the bounded pool the reservations count in; nil when
	// buffers.memory is 0: counted (Held, Backend), not bounded.
	Pool *bufring.BytePool
	// Conn is what a connection reserves, and Windows the receive
	// windows it covers, which every QUIC connection of the engine gets.
	Conn    int64
	Windows config.QUICWindows
	// Wait is buffers.accept_wait: how long a new client connection
	// waits for its reservation before it is refused.
	Wait time.Duration

	clientNow  atomic.Int64 // bytes the client connections reserve now
	backendNow atomic.Int64 // bytes the backend connections reserve now
	// spent: see admitReserve.
	spent atomic.Bool
}

var _ backend.QUICReserver = (*QUICBudget)(nil)

// ErrQUICBudget is the error of a QUIC connection that got no reservation
// in the memory budget: a client connection's (refused before its
// handshake) or a backend dial's.
var ErrQUICBudget = fmt.Errorf("%w: no room for the QUIC connection's buffers", backend.ErrBudget)

// admit reserves a new client connection's Conn bytes (see admitReserve;
// ctx ends the wait early, at a drain) and reports whether it got them.
func (b *QUICBudget) admit(ctx context.Context) bool {
	if !admitReserve(ctx, b.Pool, b.Conn, b.Wait, &b.spent) {
		return false
	}
	b.clientNow.Add(b.Conn)
	return true
}

// release gives back a client connection's reservation, once per admit.
func (b *QUICBudget) release() {
	b.clientNow.Add(-b.Conn)
	if b.Pool != nil {
		b.Pool.Unreserve(b.Conn)
	}
}

// ReserveDial reserves the buffers of a backend QUIC connection the engine
// dials (backend.QUICReserver), waiting in the pool's FIFO until ctx ends
// (the backend's timeouts.connect): the request that needs the
// connection is then answered 503 (result no_buffer), a wait that cannot
// deadlock since the payload buffers keep room of their own
// (config.TCPReserveLimit) and it ends with ctx.
func (b *QUICBudget) ReserveDial(ctx context.Context) (func(), error) {
	return reserveDial(ctx, b.Pool, b.Conn, &b.backendNow, ErrQUICBudget)
}

// Held is the bytes the client QUIC connections reserve now.
func (b *QUICBudget) Held() int64 { return b.clientNow.Load() }

// Backend is the bytes the backend QUIC connections reserve now.
func (b *QUICBudget) Backend() int64 { return b.backendNow.Load() }
