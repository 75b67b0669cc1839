package frontend

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/engine/backend"
)

// RefusedBudget is the xdpnet_connections_refused_total reason of a client
// TCP connection that got no reservation within buffers.accept_wait.
const RefusedBudget = "budget"

// TCPBudget reserves, in the memory budget, the netstack buffers of the
// client TCP connections (issue 20): netstack allocates them itself as
// data comes and goes, so the engine reserves what they may reach, the
// caps tcp_receive.max + tcp_send.max, from accept to close, in the same
// pool as the payload buffers (bufring.BytePool.Reserve). Reserving the
// caps rather than the bytes in use costs one atomic add per connection
// and bounds the worst case, which reading each endpoint's queues would
// not. A parked connection holds less (park.go: shrinkParked).
type TCPBudget struct {
	// Pool is the bounded pool the reservations count in; nil when
	// buffers.memory is 0: counted (Held), not bounded.
	Pool *bufring.BytePool
	// Conn is what a connection reserves, Rcv + Snd (the buffer maxima);
	// 0 on the kernel stack (nothing reserved or counted).
	Conn     int64
	Rcv, Snd int
	// DefRcv and DefSnd are the buffers a connection starts with
	// (tcp_receive.default, tcp_send.default), which auto-tuning grows
	// up to Rcv and Snd.
	DefRcv, DefSnd int
	// ParkedRcv and ParkedSnd are the buffers of a parked connection
	// (config.TCPParkedBuffers), which reserves their sum.
	ParkedRcv, ParkedSnd int
	// Wait is buffers.accept_wait.
	Wait time.Duration

	reservedNow atomic.Int64 // bytes the client connections reserve now
	backendNow  atomic.Int64 // bytes the backend connections reserve now
	// spent is set when a wait ended without a reservation: until one
	// is granted again, accepted connections are refused at once rather
	// than each waiting its turn behind the one before.
	spent atomic.Bool
	// small counts parked connections resumed without the room to get
	// their full buffers back: they go on with their parked ones.
	small atomic.Uint64
}

// Small is the number of parked connections resumed with their parked
// buffers for want of room in the budget.
func (b *TCPBudget) Small() uint64 { return b.small.Load() }

// held is what the client connection c reserves now (its share while
// parked; see clientConn.reserved).
func (b *TCPBudget) held(c net.Conn) int64 {
	if cc, ok := c.(*clientConn); ok {
		return cc.reserved.Load()
	}
	return b.Conn
}

// ErrTCPBudget is the error of a backend dial that got no reservation for
// its buffers before its connect timeout.
var ErrTCPBudget = fmt.Errorf("%w: no room for the TCP connection's buffers", backend.ErrBudget)

var _ backend.TCPReserver = (*TCPBudget)(nil)

// ReserveDial reserves the buffers of a backend HTTP/2 or HTTP/1.1
// connection the engine dials (backend.TCPReserver): Conn, as for a client
// connection (netstack auto-tunes a dialled connection's buffers up to the
// same maxima), waiting in the same FIFO until ctx ends (the backend's
// timeouts.connect). The request that needs the connection then fails as
// a dial would, and is retried as one. A wait cannot deadlock: the
// payload buffers such a request may hold keep room of their own
// (ReserveLimit), and it ends with ctx.
func (b *TCPBudget) ReserveDial(ctx context.Context) (func(), error) {
	if b.Conn == 0 {
		return nil, nil
	}
	return reserveDial(ctx, b.Pool, b.Conn, &b.backendNow, ErrTCPBudget)
}

// reserveDial reserves a dialled connection's n bytes in pool (nil: only
// counted in now), waiting until ctx ends; the error wraps errBudget and
// ctx's. The release it returns gives them back once.
func reserveDial(ctx context.Context, pool *bufring.BytePool, n int64, now *atomic.Int64, errBudget error) (func(), error) {
	if pool != nil {
		if err := pool.Reserve(ctx, n); err != nil {
			return nil, fmt.Errorf("%w: %w", errBudget, err)
		}
	}
	now.Add(n)
	var once sync.Once
	return func() {
		once.Do(func() {
			now.Add(-n)
			if pool != nil {
				pool.Unreserve(n)
			}
		})
	}, nil
}

// Backend is the bytes the backend connections reserve now.
func (b *TCPBudget) Backend() int64 { return b.backendNow.Load() }

// Held is the bytes the client connections reserve now.
func (b *TCPBudget) Held() int64 { return b.reservedNow.Load() }

// take reserves n bytes at once, or reports false.
func (b *TCPBudget) take(n int64) bool {
	if b.Pool != nil && !b.Pool.TryReserve(n) {
		return false
	}
	b.reservedNow.Add(n)
	return true
}

// admit reserves a new connection's Conn bytes, waiting up to Wait (in the
// pool's FIFO) when the budget is spent, unless a wait already failed and
// nothing was granted since. It reports false when the connection must be
// refused.
func (b *TCPBudget) admit() bool {
	if b.Conn == 0 {
		return true
	}
	if !admitReserve(context.Background(), b.Pool, b.Conn, b.Wait, &b.spent) {
		return false
	}
	b.reservedNow.Add(b.Conn)
	return true
}

// admitReserve reserves a new client connection's n bytes in pool (nil:
// nothing to bound), waiting up to wait in the pool's FIFO, or until ctx
// ends, when the budget is spent, unless a wait already failed (spent)
// and nothing was granted since: then it takes room at once or reports
// false, so that a burst of connections on a spent budget is refused
// rather than each one waiting its turn behind the one before.
func admitReserve(ctx context.Context, pool *bufring.BytePool, n int64, wait time.Duration, spent *atomic.Bool) bool {
	if pool == nil {
		return true
	}
	if spent.Load() {
		if !pool.TryReserve(n) {
			return false
		}
		spent.Store(false)
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := pool.Reserve(ctx, n); err != nil {
		spent.Store(true)
		return false
	}
	return true
}

// release gives back n bytes of a connection's reservation.
func (b *TCPBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.reservedNow.Add(-n)
	if b.Pool != nil {
		b.Pool.Unreserve(n)
	}
}

// admitBudget reserves the buffers of the accepted connection c, or
// closes it and counts the refusal (the caller has taken its slots under
// max_connections and gives them back on false).
func (fe *Frontend) admitBudget(c net.Conn) bool {
	if fe.env.TCP.admit() {
		return true
	}
	fe.env.Log.Debug("connection refused: no TCP buffer reservation within buffers.accept_wait", "frontend", fe.cfg.Name, "client", c.RemoteAddr())
	fe.env.Counters.Refused.WithLabelValues(fe.cfg.Name, RefusedBudget).Inc()
	c.Close()
	return false
}

// bufferSizer is a socket whose buffers can be cut and grown
// (stack's netstack TCP connections).
type bufferSizer interface {
	SetBufferSizes(rcv, snd int, fixed bool) bool
}

// shrinkBuffers cuts the buffers of a connection being parked to the
// parked sizes and gives back the rest of its reservation: an idle
// connection holds 8 KiB of the budget, not its maxima (issue 20: a
// connection with nothing in flight costs its bookkeeping only).
// Auto-tuning stays on (stack.SetBufferSizes: it grows nothing while the
// connection is parked). The unacknowledged end of its last response
// stays in netstack until the client acknowledges it, a round trip.
func (c *clientConn) shrinkBuffers() {
	b := &c.fe.env.TCP
	parked := int64(b.ParkedRcv + b.ParkedSnd)
	if b.Conn == 0 || c.reserved.Load() == parked {
		return
	}
	s, ok := socketOf(c.Conn).(bufferSizer)
	if !ok || !s.SetBufferSizes(b.ParkedRcv, b.ParkedSnd, false) {
		return
	}
	b.release(c.reserved.Swap(parked) - parked)
}

// regrowBuffers gives a connection back from a park its initial buffers,
// which auto-tuning grows up to the maxima again (fixed at the maxima for
// one that went on small before), if the budget has room for its full
// reservation at once, without overtaking a connection waiting for its
// own. Otherwise it goes on with its parked buffers, fixed so that
// auto-tuning cannot grow them past what it reserves, slower but whole
// (counted in Small), and tries again at its next resume. It never waits:
// the connection is established, and a wait here would hold up the
// resumeListener's other connections.
func (c *clientConn) regrowBuffers() {
	b := &c.fe.env.TCP
	r := c.reserved.Load()
	if b.Conn == 0 || r == b.Conn {
		return
	}
	s, ok := socketOf(c.Conn).(bufferSizer)
	if !ok {
		return
	}
	if !b.take(b.Conn - r) {
		b.small.Add(1)
		c.pinned = s.SetBufferSizes(b.ParkedRcv, b.ParkedSnd, true)
		return
	}
	if c.pinned {
		s.SetBufferSizes(b.Rcv, b.Snd, true)
	} else {
		s.SetBufferSizes(b.DefRcv, b.DefSnd, false)
	}
	c.reserved.Store(b.Conn)
}
