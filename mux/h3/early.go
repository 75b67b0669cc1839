package h3

import (
	"net/http"

	"github.com/quic-go/quic-go/http3"
)

// earlyMethods are the methods quic-go's HTTP/3 client sends before the
// handshake completes, under the names it takes them by. Both are safe
// (RFC 9110 section 9.2.1); quic-go offers no way to send OPTIONS early.
var earlyMethods = map[string]string{
	http.MethodGet:  http3.MethodGet0RTT,
	http.MethodHead: http3.MethodHead0RTT,
}

// CanSendEarly reports whether RoundTripEarly would send req in 0-RTT: a
// GET or HEAD without a body (RFC 9110 section 9.2.1: safe methods, which a
// replay of the early data cannot turn into a second action).
func CanSendEarly(req *http.Request) bool {
	return earlyMethods[req.Method] != "" && (req.Body == nil || req.Body == http.NoBody)
}

// RoundTripEarly is RoundTrip, except that a request CanSendEarly allows
// goes out at once in 0-RTT data (RFC 9114 section 10.9) while the
// connection's handshake has not completed (a quicmux.Conn from
// DialEarly), instead of waiting for it. early reports whether it did.
//
// The caller decides that the server may receive the request early. An
// early request can meet a 425 Too Early answer (RFC 8470 section 5.2),
// which the caller may send again once the handshake completed, and fails
// with an error wrapping quic.Err0RTTRejected if the server rejected the
// early data: then the server did not process it.
func (h *Client) RoundTripEarly(req *http.Request) (rsp *http.Response, early bool, err error) {
	if !CanSendEarly(req) || !h.c.Early() {
		rsp, err = h.RoundTrip(req)
		return rsp, false, err
	}
	sent := *req
	sent.Method = earlyMethods[req.Method]
	rsp, err = h.RoundTrip(&sent)
	if rsp != nil {
		rsp.Request = req
	}
	return rsp, true, err
}
