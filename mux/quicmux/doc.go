// Package quicmux runs QUIC connections (quic-go, RFC 9000, TLS 1.3 per RFC
// 9001) behind the mux.Conn contract, over any net.PacketConn: the
// engine's netstack sockets or kernel ones.
//
// NewTransport runs connections over one socket: Dial for clients, Listen
// for servers. DialEarly dials with a session ticket and returns before the
// handshake, for 0-RTT (RFC 9001 section 4.6); its stream credit comes
// from the limits remembered with the ticket until the handshake, and a
// connection whose early data the server rejected closes (Rejected0RTT). ServerTLS, ClientTLS, LoadKeyPair, LoadCertPool, SelfSigned
// and WriteSelfSigned build the TLS side; ALPNH3 and ALPNRaw name the two
// application protocols (HTTP/3, and tunnelled TCP with one stream per TCP
// connection). A client connection to one backend should use a connected
// socket through ConnectedPacketConn: on the netstack it saves a route
// lookup per datagram.
//
// Conn keeps stream credit exact, which quic-go does not expose. Raw and
// server connections count streams quic-go has already opened within the
// peer's limit (ready streams, Config.ReadyStreams) and wait in quic-go for
// MAX_STREAMS when it is used up. HTTP/3 client connections, whose streams
// quic-go's HTTP/3 layer opens, read the limit from quic-go's event stream
// (transport parameters and MAX_STREAMS frames); the HTTP/3 client
// (package h3) reserves credit before each request through H3Credit. The
// event stream costs CPU on every packet, so only those connections have
// one.
//
// quic-go uses batched reads (recvmmsg), GSO and large socket buffers only
// on kernel UDP sockets; on any other socket it queues every datagram to
// its send goroutine on its own. Transport presents a netstack socket to
// quic-go as one with UDP GSO (segmentingPacketConn), so quic-go hands over
// a burst of packets per call, cut into datagrams here; reads stay one
// datagram per call, and path MTU discovery stays off
// (Config.InitialPacketSize makes up for it). bench_test.go and
// lab_test.go measure what each path costs.
//
// It owns QUIC connections, their sockets' wrappers and their credit. It
// must not know HTTP/3 requests (h3), pools (reuse/) or the engine.
//
// Connection-level failures wrap net.ErrClosed (a closed or dead
// connection, mux.ErrGoingAway) or mux.ErrNoCredit, matched with
// errors.Is.
package quicmux
