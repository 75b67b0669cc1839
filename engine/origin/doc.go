// Package origin is a small HTTP/3 and raw-stream origin server for labs,
// tests and the demo: the kind of backend xdpnet proxies to.
//
// One QUIC listener serves two ALPN protocols: quicmux.ALPNH3 (HTTP/3, RFC
// 9114) and quicmux.ALPNRaw, where every bidirectional stream is one tunnelled
// TCP connection, either echoed or spliced to a TCP target.
//
// It owns the origin side of a lab only and must not know about the engine,
// its pools or the AF_XDP data path: it serves on any net.PacketConn (kernel sockets in the lab).
package origin
