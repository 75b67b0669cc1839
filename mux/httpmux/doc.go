// Package httpmux is the backend connection over TCP: an HTTP/2 client
// connection (RFC 9113), over TLS with ALPN h2 or in cleartext with prior
// knowledge (h2c, section 3.3), or an HTTP/1.1 one (RFC 9112), over TLS or
// not, behind mux.Conn so that reuse/ keeps it in the same idle, safe and
// avail trees as QUIC connections. Requests go through Conn.RoundTrip;
// OpenStream has no meaning here (ErrNoStreams).
//
// HTTP/2 runs on golang.org/x/net/http2's ClientConn, the one Go client
// connection that exposes what the pool needs: the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS (section 6.5.2), PING (section 6.7) and
// a graceful GOAWAY shutdown. Its stream credit is that setting minus the
// requests in flight, counted here from RoundTrip to the response body's
// Close (when StreamCredit is told). A request the server did not process
// (a GOAWAY whose last stream id is below it, section 6.8, or REFUSED_STREAM,
// section 8.7) fails with an error wrapping ErrRejected, which the engine
// retries like HTTP/3's H3_REQUEST_REJECTED.
//
// HTTP/1.1 is the one-stream case, on a client of its own (h1.go) that
// writes and reads on the caller's goroutine with net/http's wire format
// (Request.Write, ReadResponse): one request at a time, credit 1 when
// idle. A response that said Connection: close, or whose body was not read
// to its end, closes the connection rather than returning it (Conn reports
// it dead). Nothing reads an idle connection; before a request goes on a
// reused one, the client checks whether its server closed or reset it
// meanwhile (netstack's readability notification, or a MSG_PEEK on a
// kernel socket) and fails with net.ErrClosed without sending. HTTP/1.1
// has no round trip that is not a request, so Ping reports only whether
// the connection is still open: a server that vanished without a word is
// not seen.
//
// Death is seen where it happens: both clients close their TCP socket when
// the connection ends for any reason (peer close, error, GOAWAY drained,
// Close), and Conn watches that socket.
//
// It must not know pools, balancing or the engine; the TCP socket is the
// caller's (netstack or kernel).
package httpmux
