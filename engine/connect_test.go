package engine_test

import (
	"strings"
	"testing"
	"time"
)

// TestFrontendRefusesConnect: curl using the gateway as its proxy
// (CONNECT, RFC 9110 section 9.3.6) through the http and https frontends
// gets 501 at once, and nothing reaches the origin (nginx): a CONNECT sent
// on to a backend that answered 2xx would have waited for a body that
// never comes.
func TestFrontendRefusesConnect(t *testing.T) {
	t.Parallel()
	f, _ := allFrontendsLab(t, nginxHTTP1, "")
	before := f.env.Engine.Stats().BackendRequests
	for _, proxy := range []string{f.env.FrontendURL("http"), f.env.FrontendURL("https")} {
		out, err := runIn(t, f.env.StartClient, 30*time.Second, "curl", "-sS", "-m", "10", "--proxy-insecure", "-k",
			"-p", "-x", proxy, "-o", "/dev/null", "-w", "%{http_connect}", "https://198.18.2.10:443/index.html")
		if err == nil || !strings.Contains(out, "501") {
			t.Errorf("curl through %s as a proxy: %v, %q; want the CONNECT refused with 501", proxy, err, out)
		}
	}
	if n := f.env.Engine.Stats().BackendRequests - before; n != 0 {
		t.Errorf("%v CONNECT requests reached the origin", n)
	}
}
