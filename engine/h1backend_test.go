package engine_test

import (
	"net/http"
	"testing"
)

// TestHTTP1BackendRestartWhileIdle: nginx (an http1 backend) restarts while
// the engine holds idle connections to it. The engine's HTTP/1.1 client
// reads nothing while a connection is idle; it checks the connection before
// writing a request on it (on the xdp data plane, netstack's readability
// notification). So the next request of a client connection, a POST, which
// is never sent twice, must reach the new nginx (which answers a POST to a
// static file with 405) on a fresh connection instead of being written on
// a connection the old one closed and failing with 502. (The POST has no
// body: the client then writes the request before it reads, so the old
// connection's end of stream cannot be seen first by the read.)
func TestHTTP1BackendRestartWhileIdle(t *testing.T) {
	f := tcpLab(t, nginxHTTP1, "")
	cl := f.env.HTTPClient(1, false)
	defer cl.CloseIdleConnections()
	for range 2 {
		if code, _ := exchange(t, cl, http.MethodGet, f.url(), nil); code != http.StatusOK {
			t.Fatalf("GET before the restart: status %d", code)
		}
	}
	f.origins[0].kill()
	f.startOrigin(t, 0)
	opened := f.env.Engine.Stats().BackendConnsOpened
	if code, body := exchange(t, cl, http.MethodPost, f.url(), nil); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST after the restart: status %d (%q), want nginx's 405", code, body)
	}
	if n := f.env.Engine.Stats().BackendConnsOpened - opened; n < 1 {
		t.Fatalf("the POST went on an old connection (%v dialled)", n)
	}
}
