// Package framed carries many streams over one TCP connection behind the
// mux.Conn contract, after tRPC-Go's multiplexed pool: frames keyed by
// stream id, a limit of concurrent streams per connection, per-stream
// receive queues bounded by flow control, a send queue that honours
// contexts (optionally dropping when full), duplicate-id detection, and
// reconnection with bounded backoff (Dial). See wire.go for the wire
// format.
//
// It has no user in the engine yet: the engine's backends speak QUIC
// (quicmux). Issue 22 (TCP backends) decides whether it stays.
//
// It owns its TCP connection and the goroutines that serve it. It must not
// know QUIC, HTTP or the pools above it: only mux's contract.
//
// Failures are mux's (ErrNoCredit, ErrGoingAway) or this package's
// sentinels (ErrConnLost, ErrReconnectFailed, ErrIdleTimeout,
// ErrFrameTooLarge, ErrBadFrame, ErrDuplicateID, ErrStreamReset,
// ErrSendQueueFull), matched with errors.Is.
package framed
