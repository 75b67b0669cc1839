package engine_test

// Routes on the https and h3 frontends (issue 21, item 3): the cleartext
// frontend's cases of routes_test.go, with curl over HTTPS (HTTP/1.1 and
// HTTP/2, host names given with --resolve) and quic-go's HTTP/3 client
// (the Debian curl has no HTTP/3).

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
)

// routeTLSNames are the host names the route tests send over TLS; the
// frontends' certificate covers them all, so that curl verifies it.
var routeTLSNames = []string{"198.18.1.1", "api.example.test", "*.wild.test", "*.y.wild.test", "wild.test",
	"other.test", "only.test", "fast.test", "once.test", "thrice.test"}

// routeClient sends GETs to one kind of frontend: get sends host (the Host
// header or :authority, as given) and path to the frontend at port and
// returns the status, the Proxy-Status header and the body.
type routeClient struct {
	name string
	port int // the frontend's; routeLab's strict one is port+1
	get  func(t *testing.T, port int, host, path string) (status, proxyStatus, body string)
}

// routeClients are curl over HTTP/1.1 (cleartext, 8080), curl over HTTPS
// with HTTP/1.1 and HTTP/2 (8443) and quic-go's HTTP/3 client (8443);
// ca is the TLS frontends' certificate.
func routeClients(t *testing.T, env *enginelab.Env, ca string) []routeClient {
	h3c, done, err := env.HTTP3Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(done)
	h3 := func(t *testing.T, port int, host, path string) (string, string, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://198.18.1.1:%d%s", port, path), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host // the :authority; the connection is the address's
		resp, err := h3c.Do(req)
		if err != nil {
			t.Fatalf("h3 %s%s: %v", host, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("h3 %s%s: body: %v", host, path, err)
		}
		return fmt.Sprint(resp.StatusCode), resp.Header.Get("Proxy-Status"), string(b)
	}
	return []routeClient{
		{"http", 8080, func(t *testing.T, port int, host, path string) (string, string, string) {
			return curlHost(t, env, port, host, path)
		}},
		{"https-http1.1", 8443, curlTLSHost(env, ca, "--http1.1")},
		{"https-h2", 8443, curlTLSHost(env, ca, "--http2")},
		{"h3", 8443, h3},
	}
}

// curlTLSHost GETs with curl over HTTPS (version: --http1.1, --http2): the
// URL names the host (lower case, no port or trailing dot), resolved to the
// frontend with --resolve, so that SNI and certificate checks are a real
// client's; the Host header (:authority on HTTP/2) is host as given.
func curlTLSHost(env *enginelab.Env, ca, version string) func(t *testing.T, port int, host, path string) (string, string, string) {
	return func(t *testing.T, port int, host, path string) (string, string, string) {
		t.Helper()
		name := host
		if i := strings.LastIndexByte(name, ':'); i >= 0 {
			name = name[:i]
		}
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		out, err := runIn(t, env.StartClient, 20*time.Second, "curl", version, "-sS", "-m", "5", "-D", "-",
			"--cacert", ca, "--resolve", fmt.Sprintf("%s:%d:198.18.1.1", name, port),
			"-H", "Host: "+host, fmt.Sprintf("https://%s:%d%s", name, port, path))
		if err != nil {
			t.Fatalf("curl %s %s%s: %v\n%s", version, host, path, err, out)
		}
		return parseCurlResponse(out)
	}
}

// tlsRouteFrontends are YAML lines (for startRouteLab's fe) of an https
// frontend "https" and an h3 one "h3" sharing 198.18.1.1:8443 with the
// http frontend's routes and default, and of "strict-tls" and "strict-h3"
// at :8444 with the strict frontend's route and no default. The h3
// frontends serve their https frontend's certificate. httpsExtra is more
// keys of frontend https (lines indented four spaces).
func tlsRouteFrontends(cert labCertFiles, httpsExtra string) string {
	return fmt.Sprintf(`  - name: https
    listen: "198.18.1.1:8443"
    protocol: https
    backend: a
    routes: [%[1]s]
    tls: {cert: %[2]q, key: %[3]q}
%[4]s  - {name: h3, listen: "198.18.1.1:8443", protocol: h3, backend: a, routes: [%[1]s]}
  - {name: strict-tls, listen: "198.18.1.1:8444", protocol: https, routes: [{host: only.test, backend: a}], tls: {cert: %[2]q, key: %[3]q}}
  - {name: strict-h3, listen: "198.18.1.1:8444", protocol: h3, routes: [{host: only.test, backend: a}]}
`, labRoutes, cert.cert, cert.key, httpsExtra)
}

// TestLabRoutesTLS: routeCases on the https frontend (curl over HTTP/1.1
// and HTTP/2 with TLS) and the h3 frontend (quic-go), to gtlsserver and
// caddy, each request counted by route and frontend.
func TestLabRoutesTLS(t *testing.T) {
	cert := writeLabCert(t, filepath.Join(t.TempDir(), "fe"), routeTLSNames...)
	rl := startRouteLab(t, "", tlsRouteFrontends(cert, ""))
	env := rl.env
	for _, c := range routeClients(t, env, cert.cert)[1:] { // the TLS ones

		t.Run(c.name, func(t *testing.T) {
			for _, tc := range routeCases {
				port := c.port
				if tc.strict {
					port++
				}
				status, ps, body := c.get(t, port, tc.host, tc.path)
				tc.check(t, fmt.Sprintf("%s :%d", c.name, port), status, ps, body)
			}
		})
	}
	// routeCases' counts, twice on the https frontends (HTTP/1.1 and
	// HTTP/2), once on the h3 ones.
	text := metricsText(t, env)
	for _, fe := range []struct {
		name, strict string
		clients      float64
	}{{"https", "strict-tls", 2}, {"h3", "strict-h3", 1}} {
		for _, c := range []struct {
			labels []string
			want   float64
		}{
			{[]string{`frontend="` + fe.name + `"`, `route="api"`}, 2},
			{[]string{`frontend="` + fe.name + `"`, `route="*.wild.test"`}, 2},
			{[]string{`frontend="` + fe.name + `"`, `route="default"`}, 3},
			{[]string{`frontend="` + fe.strict + `"`, `route="only.test"`}, 1},
		} {
			if got, _ := metricSum(text, regexp.MustCompile(`^xdpnet_route_requests_total$`), c.labels...); got != fe.clients*c.want {
				t.Errorf("xdpnet_route_requests_total %v = %v, want %v", c.labels, got, fe.clients*c.want)
			}
		}
		if got, _ := metricSum(text, regexp.MustCompile(`^xdpnet_requests_total$`), `frontend="`+fe.strict+`"`, `result="no_route"`); got != fe.clients {
			t.Errorf("%s: no_route requests = %v, want %v", fe.strict, got, fe.clients)
		}
	}
}
