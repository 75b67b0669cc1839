// Package h3 sends HTTP/3 requests (RFC 9114) on one chosen QUIC
// connection: Client is an http.RoundTripper over a quicmux.Conn that
// reuse/ picked. It never dials, and it keeps the connection's stream
// credit exact: each request reserves a unit through quicmux.H3Credit
// before quic-go's HTTP/3 layer opens its stream, and reports the stream
// ended when the response body ends. RoundTripEarly sends GET and HEAD in
// 0-RTT data on a connection whose handshake has not completed.
//
// It owns the HTTP/3 client session and request bookkeeping. It must not
// know how connections are made, pooled or chosen (quicmux, reuse/), nor
// count credit itself: quicmux does.
package h3
