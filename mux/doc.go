// Package mux puts many streams on one connection behind a single interface,
// Conn: QUIC connections (quic-go) over a netstack UDP socket, and framed
// virtual connections over one TCP connection. reuse/ pools Conns; it knows
// them only through this interface.
//
// # QUIC
//
// DialQUIC, NewQUICTransport and ListenQUIC run quic-go (RFC 9000, TLS 1.3
// per RFC 9001) over any net.PacketConn: the engine's netstack sockets or
// kernel ones. ServerTLS, ClientTLS, LoadKeyPair, LoadCertPool and
// SelfSigned build the TLS side; ALPNH3 and ALPNRaw name the two
// application protocols (HTTP/3, and tunnelled TCP with one stream per TCP
// connection). A client connection to one backend should use a connected
// socket through ConnectedPacketConn: on the netstack it saves a route
// lookup per datagram.
//
// QUICConn keeps stream credit exact, which quic-go does not expose. Raw
// and server connections count streams quic-go has already opened within
// the peer's limit (ready streams, Config.ReadyStreams) and wait in quic-go
// for MAX_STREAMS when it is used up. HTTP/3 client connections, whose
// streams quic-go's HTTP/3 layer opens, read the limit from quic-go's event
// stream (transport parameters and MAX_STREAMS frames) and reserve credit
// before each request; HTTP3Client sends HTTP/3 requests on one chosen
// QUICConn within that accounting. The event stream costs CPU on every
// packet, so only those connections have one.
//
// quic-go uses batched reads (recvmmsg), GSO and large socket buffers only
// on kernel UDP sockets; on any other socket it queues every datagram to
// its send goroutine on its own. QUICTransport presents a netstack socket
// to quic-go as one with UDP GSO (segmentingPacketConn), so quic-go hands
// over a burst of packets per call, cut into datagrams here; reads stay one
// datagram per call, and path MTU discovery stays off
// (Config.InitialPacketSize makes up for it). bench_test.go and
// lab_test.go measure what each path costs.
//
// # Framed virtual connections
//
// NewFramed and DialFramed carry streams over one TCP connection, after
// tRPC-Go's multiplexed pool: frames keyed by stream id, a limit of
// concurrent streams per connection, per-stream receive queues bounded by
// flow control, a send queue that honours contexts (optionally dropping
// when full), duplicate-id detection, and reconnection with bounded
// backoff. See framedwire.go for the wire format.
//
// # Errors
//
// Connection-level failures wrap net.ErrClosed (a closed or dead QUIC
// connection, ErrGoingAway) or are one of the package's sentinels
// (ErrNoCredit, ErrConnLost, ErrReconnectFailed, ErrIdleTimeout,
// ErrFrameTooLarge, ErrBadFrame, ErrDuplicateID, ErrStreamReset,
// ErrSendQueueFull), matched with errors.Is.
package mux
