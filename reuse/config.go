package reuse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xdpnet/xdpnet/mux"
)

// Policy says which existing connections a request may use. The semantics
// are those of HAProxy's http-reuse directive. A session's first request is
// the one a client cannot retry by itself if the server closes the connection
// under it, so the policies differ on that request:
//
//	policy      first request of a session      later requests
//	never       private connections only        private connections only
//	safe        avail                           avail, safe, idle
//	aggressive  avail, safe                     avail, safe, idle
//	always      avail, safe, idle               avail, safe, idle
//
// A connection in avail has streams in flight, so the server is not about to
// close it for idleness (HAProxy counts such connections as safe too); a
// connection in safe is idle but has completed a request, so the server is
// known to keep connections open; one in idle has not.
type Policy uint8

const (
	// PolicySafe is the default: a session's first request only goes to a
	// connection known to work right now (one with streams in flight).
	PolicySafe Policy = iota
	// PolicyNever never shares a connection between sessions: every
	// connection is private to the session that opened it (and closed after
	// its request when there is no session).
	PolicyNever
	// PolicyAggressive also lets a first request use safe connections.
	PolicyAggressive
	// PolicyAlways lets a first request use any connection.
	PolicyAlways
)

func (p Policy) String() string {
	switch p {
	case PolicySafe:
		return "safe"
	case PolicyNever:
		return "never"
	case PolicyAggressive:
		return "aggressive"
	case PolicyAlways:
		return "always"
	default:
		return fmt.Sprintf("policy(%d)", uint8(p))
	}
}

// Clock tells the time. *muxtest.Clock is a manual one for tests.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// SystemClock is the real clock, the default.
var SystemClock Clock = systemClock{}

// Dialer opens a new backend connection for p. It is called without any pool
// lock held, from the goroutine that called Attach (or from a warm-up
// goroutine, with the pool's context). The Conn it returns is owned by the
// pool from then on: the pool closes it.
type Dialer func(ctx context.Context, p Params) (mux.Conn, error)

// Config configures a Pool. Zero values select the defaults given.
type Config struct {
	// Workers is the number of per-worker shards (default 1).
	Workers int
	// Policy is the reuse policy (default PolicySafe).
	Policy Policy
	// Dial opens connections. Required.
	Dial Dialer
	// Clock drives the timers (default SystemClock).
	Clock Clock
	// RetryableFirst says the engine retries a request that fails on a
	// reused connection before any response byte (Worker.Retry), so a
	// session's first request is as safe as a later one: the policies then
	// treat every request as a later one (HAProxy does the same when
	// retry-on covers connection failures, empty responses and response
	// timeouts). Leave it false when request bodies cannot be replayed.
	RetryableFirst bool

	// MaxIdlePerServer bounds the idle and safe connections one worker keeps
	// per server (default 16; negative: keep none). A connection that would
	// exceed it on detach is closed gracefully.
	MaxIdlePerServer int
	// MaxConnsPerServer bounds all connections (including dials in progress
	// and private ones) one worker has per server; Attach fails with
	// ErrTooManyConns above it. 0: unlimited.
	MaxConnsPerServer int
	// PoolLowConn is the number of connections per server each worker keeps
	// ready: purge never closes idle connections below it, Tick dials to
	// restore it for servers in use, and a worker below it dials rather than
	// taking a connection over from another worker (so that every worker
	// builds its own small pool, as HAProxy's pool-low-conn does). 0: none.
	PoolLowConn int

	// PurgeDelay is the period of the purge of surplus idle connections
	// (default 5s; negative disables it). Each purge closes half of the idle
	// connections beyond the recent need (the peak number of connections in
	// use over the last periods), least recently used first.
	PurgeDelay time.Duration
	// MaxIdleAge closes idle connections unused for this long (default 0:
	// no limit). Set it below the servers' idle timeout.
	MaxIdleAge time.Duration
	// ProbeInterval pings idle connections unused for this long, then every
	// ProbeInterval; one that fails the ping is closed (default 0: off).
	ProbeInterval time.Duration
	// ProbeTimeout bounds one ping (default 2s).
	ProbeTimeout time.Duration
	// MaxDialsPerServer bounds the handshakes one worker has in flight per
	// server (default 2). An Attach that finds no stream credit waits for
	// an in-flight dial whose expected streams are not yet spoken for, or
	// for credit to come back, rather than dial beyond it: a burst of
	// requests must not become a burst of handshakes (a dial storm that
	// overloads the origins and then looks like their failure).
	MaxDialsPerServer int
	// QueueTimeout bounds how long an Attach waits for stream credit or a
	// dial slot (default 2s; the caller's context may end it sooner). It
	// then fails with ErrQueueTimeout. HAProxy's timeout queue.
	QueueTimeout time.Duration
	// MaxStreams bounds the leases one connection carries at once (0: as
	// many as the peer's stream credit allows). Set it to spread requests
	// over more connections than the servers' stream limits would.
	MaxStreams int
	// MaxReuse bounds the streams one connection carries over its life; a
	// connection that reached it takes no new stream and closes when its
	// last stream ends. 0: unlimited.
	MaxReuse int
	// MaxSessionConns bounds the idle private connections one session keeps
	// (default 4); an extra one is closed when its request ends.
	MaxSessionConns int
	// TakeoverScan bounds how many other workers one Attach may try to take
	// an idle connection from (default: all of them; negative disables
	// takeover).
	TakeoverScan int
	// ShutdownTimeout bounds the graceful close of an evicted connection
	// (default 5s).
	ShutdownTimeout time.Duration
}

func (c *Config) setDefaults() error {
	if c.Dial == nil {
		return errors.New("reuse: config: Dial is required")
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.Workers < 0 {
		return fmt.Errorf("reuse: config: Workers %d < 0", c.Workers)
	}
	if c.Policy > PolicyAlways {
		return fmt.Errorf("reuse: config: unknown policy %d", c.Policy)
	}
	if c.Clock == nil {
		c.Clock = SystemClock
	}
	switch {
	case c.MaxIdlePerServer == 0:
		c.MaxIdlePerServer = 16
	case c.MaxIdlePerServer < 0:
		c.MaxIdlePerServer = 0
	}
	if c.MaxConnsPerServer < 0 || c.PoolLowConn < 0 || c.MaxReuse < 0 || c.MaxStreams < 0 {
		return errors.New("reuse: config: negative connection limit")
	}
	if c.MaxConnsPerServer > 0 && c.PoolLowConn > c.MaxConnsPerServer {
		return fmt.Errorf("reuse: config: PoolLowConn %d above MaxConnsPerServer %d", c.PoolLowConn, c.MaxConnsPerServer)
	}
	if c.MaxDialsPerServer < 0 || c.QueueTimeout < 0 {
		return errors.New("reuse: config: negative dial limit or queue timeout")
	}
	if c.MaxDialsPerServer == 0 {
		c.MaxDialsPerServer = 2
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = 2 * time.Second
	}
	if c.PurgeDelay == 0 {
		c.PurgeDelay = 5 * time.Second
	}
	if c.MaxIdleAge < 0 || c.ProbeInterval < 0 || c.ProbeTimeout < 0 || c.ShutdownTimeout < 0 {
		return errors.New("reuse: config: negative duration")
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 2 * time.Second
	}
	if c.MaxSessionConns == 0 {
		c.MaxSessionConns = 4
	}
	if c.MaxSessionConns < 0 {
		return fmt.Errorf("reuse: config: MaxSessionConns %d < 0", c.MaxSessionConns)
	}
	if c.TakeoverScan == 0 || c.TakeoverScan > c.Workers-1 {
		c.TakeoverScan = c.Workers - 1
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	return nil
}

var (
	// ErrPoolClosed is returned by Attach after Pool.Close. It wraps
	// net.ErrClosed.
	ErrPoolClosed = fmt.Errorf("reuse: pool closed: %w", net.ErrClosed)
	// ErrTooManyConns is returned by Attach when no connection can take the
	// request and the worker already has MaxConnsPerServer connections
	// (after waiting QueueTimeout for credit: it wraps ErrQueueTimeout
	// then).
	ErrTooManyConns = errors.New("reuse: too many connections to server")
	// ErrQueueTimeout is returned by Attach when no stream credit and no
	// dial slot came within Config.QueueTimeout: the gateway's own
	// saturation, not a failure of the server.
	ErrQueueTimeout = errors.New("reuse: no stream within the queue timeout")
	// ErrNotRetryable is returned by Retry for a lease whose connection was
	// fresh: its failure says something about the server, not about a
	// connection that went stale while idle.
	ErrNotRetryable = errors.New("reuse: request not retryable")
	// ErrStaleLease is returned when a Lease is used after Done.
	ErrStaleLease = errors.New("reuse: lease already done")
	// ErrForeignSession is returned when a Session is used on a worker other
	// than the one that created it.
	ErrForeignSession = errors.New("reuse: session belongs to another worker")
	errNoConn         = errors.New("reuse: dialer returned neither a connection nor an error")
	// ErrNoSession is returned by Lease.MakePrivate on a lease attached
	// without a session.
	ErrNoSession = errors.New("reuse: no session to tie the connection to")
)
