package h3

import "net/http"

// CanSendEarly reports whether RoundTripEarly would send req in 0-RTT: a
// GET or HEAD without a body (RFC 9110 section 9.2.1: safe methods, which a
// replay of the early data cannot turn into a second action).
func CanSendEarly(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) && (req.Body == nil || req.Body == http.NoBody)
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
	rsp, err = h.roundTrip(req, true)
	return rsp, true, err
}
