// Package reuse decides, for each backend request, which multiplexed backend
// connection (mux.Conn) carries it, so that almost no request pays for a
// handshake.
//
// # Model
//
// A Pool has one Worker per engine worker (one per dedicated NIC queue). A
// Worker keeps, per server, the connections it owns in three trees, as HAProxy
// does per thread and per server:
//
//   - avail: connections with streams in use and stream credit left;
//   - safe: idle connections (no stream in use) that have completed a
//     request, so they are known to work;
//   - idle: idle connections that never completed a request.
//
// Private connections are in no tree: they belong to one client Session (for
// example after per-connection authentication, or under PolicyNever) and only
// that session's requests use them, within Config.MaxSessionConns.
//
// HAProxy's trees are ebtrees keyed by a connection hash. The Go equivalent
// used here is a per-worker map[uint64]*bucket: a bucket holds the connections
// of one exact parameter set (Params) and has one intrusive doubly-linked list
// per tree, so moving a connection between trees is O(1) and allocation-free.
// Each worker also keeps, per server, one intrusive LRU list of its idle and
// safe connections (front: most recently used); purge and idle-age eviction
// take from its back. Params.Hash is 64 bits; a hit also compares the full
// Params, and hash collisions chain buckets, so a collision never hands out a
// wrong connection. Everything that makes a connection unshareable is in
// Params: server, destination and source address and port, SNI, ALPN, mux
// kind, PROXY protocol line and TLS client identity (a pool keyed by address
// alone would hand a connection made for one TLS identity to another).
//
// # Life of a request
//
// Worker.Attach finds a connection (lookup order: the session's private
// connections, avail, safe, idle, then a takeover of an idle connection from
// another worker, then a dial), opens a stream on it and returns a Lease. The
// Lease owns the stream (among connections with credit in avail, the one
// with the most takes it, so requests spread by the streams the peers
// grant); Lease.Done(err) closes it and detaches: with no stream
// left the connection goes to safe (if a request completed on it) or idle,
// unless the per-server idle limit is reached (then it is closed
// gracefully); with streams left and credit it goes to avail; a
// dead connection is released. When the peer raises its stream limit (a QUIC
// MAX_STREAMS frame) a connection that was full re-enters avail at once,
// which HAProxy leaves as a TODO.
//
// When no connection has credit, Attach dials another one only if it is
// needed and allowed (Envoy's connection pools count the same way): the
// requests already waiting outnumber the streams the dials in flight are
// expected to bring (Config.MaxStreams each, or 100), and fewer than
// Config.MaxDialsPerServer dials are in flight. Otherwise it waits, oldest
// first, for a stream's credit, a dial or the peer's MAX_STREAMS, at most
// Config.QueueTimeout (ErrQueueTimeout). A burst of requests therefore
// opens as many connections as it needs streams, a few at a time, never
// one per request; and when a dial fails, the requests that waited for it
// get its error instead of each trying the server again.
//
// Worker.AttachConn serves callers whose protocol opens its own streams (an
// HTTP/3 client sends each request on a stream it opens): it chooses the
// connection the same way but opens nothing; its Lease holds one unit of
// the connection's stream credit, counted as used until Done, and the
// caller opens its one stream on Lease.Conn. The pool counts a lease whose
// caller has not opened yet as leases minus the mux's UsedStreams, so the
// credit it hands out stays exact without any call from the caller between
// Attach and Done. Config.MaxStreams caps the leases of one connection.
//
// The reuse policy (Policy) follows HAProxy's http-reuse: under PolicySafe a
// session's first request only goes to a connection known to work right now
// (one with streams in flight), because the client cannot retry it if the
// server closes an idle connection under it. When the engine retries such a
// failure itself (Worker.Retry: a request that failed on a reused connection
// before any response byte is sent again on a fresh one), Config.RetryableFirst
// lifts that restriction for a pool, as HAProxy's retry-on does, and
// Worker.AttachConnKeyRetryable for one request (an idempotent one whose
// body can be replayed, on a pool whose other requests cannot all be).
//
// Limits (idle connections, connections, warm-up) are per worker and per
// server; Config.MaxReuse retires a connection after a number of streams.
//
// # Concurrency: what is shared and why
//
// A Worker's state (buckets, trees, LRU lists, sessions, counters) is guarded
// by one mutex per Worker. It is taken by the goroutines serving that worker's
// requests (Attach, Lease.Done, Tick), so it is uncontended except in two rare
// cases, and no hot path takes a lock shared between workers:
//
//   - takeover: a worker with no usable connection may move an idle connection
//     of another worker to itself; it holds its own mutex and calls TryLock on
//     the other worker's, never Lock, and skips a busy worker, so two workers
//     taking over from each other cannot deadlock and an owner never waits
//     for a thief longer than one list removal;
//   - Pool.Close, an administrative operation, locks each worker in turn.
//
// mux.Watcher callbacks (stream credit, connection death) arrive on mux
// goroutines. They take no lock: each connection is pushed at most once onto
// its owner's lock-free inbox (an intrusive Treiber stack), which the owner
// drains under its own mutex at the next Attach or Tick. Correctness does not
// depend on that latency: Attach checks Alive and AvailStreams before handing
// out a connection, and an OpenStream that still fails (the connection died
// in between) makes Attach try the next candidate.
//
// Attach calls mux.Conn.OpenStream with the worker's mutex held, after it saw
// AvailStreams > 0 under that mutex; since every lease of a pooled
// connection is taken under its owner's mutex, that credit is still there
// and OpenStream returns without waiting (the mux.Conn contract). An
// AttachConn caller opens later, outside the mutex, on credit the pool has
// kept for it since. Graceful closes
// (Shutdown) run on their own goroutines and hard closes (Pool.Close) outside
// the workers' mutexes, so no mux wait happens under a pool lock.
//
// Pool-wide rare counters (stale Done calls, probe failures) are atomics.
//
// # Timers
//
// The pool runs no goroutine of its own for timers. Worker.Tick, called by the
// engine's worker (or by Pool.Run), reads Config.Clock and runs the purge of
// surplus idle connections every Config.PurgeDelay, the maximum idle age,
// liveness probing of idle connections (mux.Conn.Ping: a QUIC PING frame) and
// the Config.PoolLowConn warm-up dials. Timestamps used on the hot path are
// those of the last Tick, so with a manual clock every timer is deterministic.
package reuse
