package frontend

import (
	"net/http"
	"testing"
)

// An HTTP/1.1 response goes chunked (roomForTrailers) when trailers may
// follow its body: declared by the backend, or undeclared from an HTTP/2
// or HTTP/3 backend to a client that sent TE: trailers; never for HEAD or
// an HTTP/2 or HTTP/3 client, whose framing carries trailers anyway.
func TestRoomForTrailers(t *testing.T) {
	te := http.Header{"Te": {"trailers"}}
	for _, tc := range []struct {
		name            string
		method          string
		clientMajor     int
		header          http.Header
		backendMajor    int
		backendDeclared bool
		want            bool
	}{
		{"h1 client, h2 backend, TE: trailers", http.MethodGet, 1, te, 2, false, true},
		{"h1 client, h3 backend, TE: trailers", http.MethodPost, 1, te, 3, false, true},
		{"h1 client, h2 backend, no TE", http.MethodGet, 1, http.Header{}, 2, false, false},
		{"h1 client, h1 backend, TE: trailers", http.MethodGet, 1, te, 1, false, false},
		{"h1 client, declared trailers", http.MethodGet, 1, http.Header{}, 1, true, true},
		{"HEAD", http.MethodHead, 1, te, 2, true, false},
		{"h2 client", http.MethodGet, 2, te, 2, true, false},
	} {
		r := &http.Request{Method: tc.method, ProtoMajor: tc.clientMajor, Header: tc.header}
		resp := &http.Response{ProtoMajor: tc.backendMajor}
		if tc.backendDeclared {
			resp.Trailer = http.Header{"Grpc-Status": nil}
		}
		if got := roomForTrailers(r, resp); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
