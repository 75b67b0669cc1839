package frontend

import (
	"bytes"
	"net"
	"net/http"
	"sync/atomic"
)

// framingScan watches the bytes of an HTTP/1.x client connection for a
// request framed two ways, which net/http accepts but RFC 9112 does not
// let a proxy pass quietly:
//
//   - Content-Length and Transfer-Encoding both (section 6.3, rule 3):
//     net/http drops the Content-Length and reads the body chunked, so the
//     gateway and its backend agree, but a proxy in front of the gateway
//     that framed the body by its length saw other requests on the
//     connection than the gateway does (request smuggling, section 11.2).
//     The RFC says to treat the message as an error, or to process it by
//     Transfer-Encoding and close the connection after the response.
//   - Transfer-Encoding in an HTTP/1.0 request (section 6.1): net/http
//     ignores it; the RFC says the framing is faulty and the connection
//     must be closed.
//
// The request net/http hands the handler no longer carries the dropped
// field, so the scan reads the header sections off the connection: each
// line's start is compared with the two field names, and an empty line
// ends a section. Body bytes are scanned as lines too; a body that holds
// a header section framed both ways (an HTTP message sent as data) is
// refused as well, which costs nothing but that request.
//
// HAProxy and Envoy refuse such requests; the gateway answers 400 with
// Connection: close to the first request of the connection served after
// the scan saw one (with pipelining, a request before it on the same
// connection may get the 400: nothing after a smuggling attempt on a
// connection can be trusted).
//
// Every connection carries one, idle ones too: its fields are ordered to
// pack (40 bytes).
type framingScan struct {
	line [len("transfer-encoding:")]byte // the current line's start, lowercased
	tail [len("HTTP/1.0\r")]byte         // the current line's last bytes
	// inSection: a line of the current header section was seen (the
	// next non-empty line is a field line, not a request line).
	inSection bool
	// The current section's request line ended in HTTP/1.0; it has a
	// Content-Length, a Transfer-Encoding field.
	http10, cl, te bool
	// n is the current line's length so far, up to maxLineCount (only
	// its first len(line) and last len(tail) bytes matter).
	n   int32
	bad atomic.Bool // a section framed two ways was seen
}

// maxLineCount is where framingScan.n stops counting.
const maxLineCount = 1 << 20

var (
	fieldCL = []byte("content-length:")
	fieldTE = []byte("transfer-encoding:")
)

// scan reads b, the next bytes of the connection (from its Read, one
// goroutine at a time).
func (s *framingScan) scan(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.take(b)
			return
		}
		s.take(b[:i])
		s.endLine()
		b = b[i+1:]
	}
}

// take adds p to the current line.
func (s *framingScan) take(p []byte) {
	n := int(s.n)
	for i := 0; i < len(p) && n+i < len(s.line); i++ {
		c := p[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		s.line[n+i] = c
	}
	s.n = int32(min(n+len(p), maxLineCount))
	if len(p) >= len(s.tail) {
		copy(s.tail[:], p[len(p)-len(s.tail):])
	} else {
		copy(s.tail[:], s.tail[len(p):])
		copy(s.tail[len(s.tail)-len(p):], p)
	}
}

// endLine ends the current line (its '\n' was read).
func (s *framingScan) endLine() {
	line := s.line[:min(int(s.n), len(s.line))]
	tail := s.tail[len(s.tail)-min(int(s.n), len(s.tail)):]
	s.n = 0
	switch {
	case len(line) == 0 || (len(line) == 1 && line[0] == '\r'):
		// An empty line ends the section (or precedes a request line,
		// which RFC 9112 section 2.2 lets a server ignore).
		if s.te && (s.cl || s.http10) {
			s.bad.Store(true)
		}
		s.inSection, s.http10, s.cl, s.te = false, false, false, false
	case !s.inSection:
		s.inSection = true
		s.http10 = bytes.HasSuffix(tail, []byte("HTTP/1.0\r")) || bytes.HasSuffix(tail, []byte("HTTP/1.0"))
	case bytes.HasPrefix(line, fieldCL):
		s.cl = true
	case bytes.HasPrefix(line, fieldTE):
		s.te = true
	}
}

// badFraming reports whether r's connection carried a request framed two
// ways (see framingScan): r must then be refused.
func badFraming(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	v, _ := r.Context().Value(connKey{}).(net.Conn)
	c := clientOf(v)
	return c != nil && c.framing.bad.Load()
}

// refuseFraming answers a request of a connection framed two ways: 400,
// and the connection closed after it (RFC 9112 sections 6.1 and 6.3).
func refuseFraming(w http.ResponseWriter) int {
	w.Header().Set("Connection", "close")
	http.Error(w, "400 Bad Request: a request framed by both Content-Length and Transfer-Encoding, or Transfer-Encoding in HTTP/1.0 (RFC 9112 sections 6.1, 6.3)", http.StatusBadRequest)
	return http.StatusBadRequest
}
