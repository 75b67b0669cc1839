package frontend

import (
	"io"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Trailers (RFC 9110 section 6.5) pass both ways, as gRPC needs them
// (grpc-status and grpc-message end every call in the response trailers).
//
// Request: the client's trailers reach the handler in r.Trailer only once
// its body was read to the end (Go's HTTP/1.1 and HTTP/2 servers fill the
// declared keys in place; quic-go's HTTP/3 server and an HTTP/1.1 chunked
// body with undeclared trailers replace the map), so the forwarded request
// gets its own Trailer map, announced with the declared names, and the
// values are copied into it at the end of the body (trailerBody), before
// the backend's client (HTTP/3, HTTP/2, HTTP/1.1 chunked), which reads the
// body to its end first, sends them.
// Go's HTTP/2 server keeps only trailers the client declared with a
// Trailer header; HTTP/1.1 and HTTP/3 clients' undeclared ones pass too.
//
// Response: the backend's trailers are declared to the client in a Trailer
// header when the backend announced them, and set after the body under
// http.TrailerPrefix, which Go's HTTP/1.1 (chunked) and HTTP/2 servers and
// quic-go's HTTP/3 server all send as trailers, announced or not. They are
// sent only after a complete body: trailers after a body that broke off
// would vouch for a truncated response.

// teTrailers reports whether the client's TE header field accepts trailers.
// TE is connection-specific and removed with the other hop-by-hop fields,
// but "TE: trailers" is the one value HTTP/2 and HTTP/3 allow (RFC 9113
// section 8.2.2, RFC 9114 section 4.2) and the way a gRPC client tells
// the server that nothing on the path drops trailers (RFC 9110 section
// 10.1.4), so the proxy, which passes them, keeps it toward the backend.
func teTrailers(h http.Header) bool {
	for _, v := range h.Values("Te") {
		for t := range strings.SplitSeq(v, ",") {
			t, _, _ = strings.Cut(t, ";")
			if strings.EqualFold(strings.TrimSpace(t), "trailers") {
				return true
			}
		}
	}
	return false
}

// copyTrailer adds to dst the fields of src that may be trailers (RFC 9110
// section 6.5.1), skipping declared names that never came (nil values).
func copyTrailer(dst, src http.Header) {
	for k, vv := range src {
		if len(vv) > 0 && httpguts.ValidTrailerHeader(k) {
			dst[k] = vv
		}
	}
}

// trailerBody is a forwarded request's streamed body: at its end it copies
// the client's request trailers (from, read then) into the forwarded
// request's Trailer map (to), which the backend's client sends after the
// body. Read runs in that client's body goroutine, which reads to the end
// before it looks at the trailers.
type trailerBody struct {
	io.ReadCloser
	from *http.Request
	to   http.Header
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		copyTrailer(b.to, b.from.Trailer)
	}
	return n, err
}

// declareTrailers announces the response trailers the backend declared
// (their names, in resp.Trailer with no values yet) in a Trailer header
// field, as RFC 9110 section 6.6.2 asks of a sender; for an HTTP/1.1
// client it also keeps net/http from sizing a short body with a
// Content-Length, which would leave no room for trailers.
func declareTrailers(h http.Header, announced http.Header) {
	if len(announced) == 0 {
		return
	}
	names := make([]string, 0, len(announced))
	for k := range announced {
		if httpguts.ValidTrailerHeader(k) {
			names = append(names, k)
		}
	}
	if len(names) > 0 {
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
}

// roomForTrailers reports whether the response resp to r, from an
// HTTP/1.1 client, must go chunked (its Content-Length dropped) so that
// trailers can follow the body (RFC 9112 section 7.1.2): the backend
// declared some, or the client accepts them (TE: trailers, RFC 9110
// section 10.1.4) and the backend spoke HTTP/2 or HTTP/3, whose trailers
// need no declaration and are known only at the body's end (nginx's
// add_trailer over HTTP/2 sends a Content-Length and undeclared
// trailers). Not for HEAD, whose Content-Length describes a body never
// sent.
func roomForTrailers(r *http.Request, resp *http.Response) bool {
	if r.ProtoMajor != 1 || r.Method == http.MethodHead {
		return false
	}
	return len(resp.Trailer) > 0 || (resp.ProtoMajor >= 2 && teTrailers(r.Header))
}

// setTrailers hands the backend's response trailers to the client's
// ResponseWriter after the body (http.TrailerPrefix: sent whether declared
// or not).
func setTrailers(h http.Header, trailers http.Header) {
	for k, vv := range trailers {
		if len(vv) > 0 && httpguts.ValidTrailerHeader(k) {
			h[http.TrailerPrefix+k] = vv
		}
	}
}

// headersFirst reports whether resp's headers go to the client at once,
// before any of its body: a response that announces trailers (as
// httputil.ReverseProxy does) or a gRPC one, whose server may send its
// headers long before its first message (grpc-go's own HTTP/2 server
// announces no trailers) while the client waits for them (grpc-go's
// ClientStream.Header). Not a gRPC "Trailers-Only" response (grpc-status
// in its headers, no body): it must reach the client as one header block
// ending the stream, which a flush would split from the stream's end.
// Other responses' headers go with their first body chunk, in one write.
func headersFirst(resp *http.Response) bool {
	if resp.Header.Get("Grpc-Status") != "" {
		return false
	}
	return len(resp.Trailer) > 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc")
}
