package engine_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/lab"
)

// routeLab is an engine in the lab in front of two third-party origins,
// gtlsserver as backend "a" (198.18.2.10:443) and caddy as backend "b"
// (198.18.2.11:443). Each serves /who and /b/who, whose body names the
// origin ("a" or "b"), so a response says which backend the route chose;
// caddy's /xff answers the X-Forwarded-For it got (the PROXY protocol
// tests).
type routeLab struct {
	env   *enginelab.Env
	files [2]originFiles
}

// routeConfig is routeLab's configuration: frontend "http" at :8080 with
// backend a as its default route and routes, frontend "strict" at :8081
// with routes only; top is extra top-level YAML, fe extra keys of the
// http frontend (lines indented four spaces), which may be followed by
// more frontends (lines "  - ...").
func routeConfig(files [2]originFiles, routes, top, fe string) string {
	return fmt.Sprintf(`dataplane: xdp
admin: 127.0.0.1:0
%sinterfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - name: http
    listen: "198.18.1.1:8080"
    protocol: http
    backend: a
    routes: [%s]
%s  - {name: strict, listen: "198.18.1.1:8081", protocol: http, routes: [{host: only.test, backend: a}]}
backends:
  - name: a
    tls: {ca: %q}
    health_check: {interval: 500ms, timeout: 400ms, rise: 1}
    servers: [{name: gtlsserver, address: "198.18.2.10:443"}]
  - name: b
    tls: {ca: %q}
    health_check: {interval: 500ms, timeout: 400ms, rise: 1}
    servers: [{name: caddy, address: "198.18.2.11:443"}]
`, top, routes, fe, files[0].cert, files[1].cert)
}

const labRoutes = `{name: api, host: api.example.test, path_prefix: /b/, backend: b}, {host: "*.wild.test", backend: b}`

func startRouteLab(t *testing.T, top, fe string) *routeLab {
	t.Helper()
	needTool(t, "gtlsserver")
	needTool(t, "caddy")
	rl := &routeLab{}
	kinds := [2]originKind{gtlsserver, caddyOrigin(map[string]any{
		"match":  []any{map[string]any{"path": []string{"/xff"}}},
		"handle": []any{map[string]any{"handler": "static_response", "body": "{http.request.header.X-Forwarded-For}"}},
	})}
	addrs := [2]netip.AddrPort{netip.MustParseAddrPort("198.18.2.10:443"), netip.MustParseAddrPort("198.18.2.11:443")}
	for i, name := range []string{"a", "b"} {
		rl.files[i] = newOriginFiles(t, addrs[i].Addr().String())
		for _, f := range []string{"who", "b/who"} {
			p := filepath.Join(rl.files[i].dir, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var origins []*proc
	t.Cleanup(func() {
		for _, p := range origins {
			p.kill()
		}
	})
	rl.env = startLab(t, "xdp", enginelab.Options{
		Config:    routeConfig(rl.files, labRoutes, top, fe),
		Clients:   2,
		NoOrigins: true,
		BeforeEngine: func(l *lab.Lab) error {
			for i := range kinds {
				p, err := launchOrigin(kinds[i], l.Backend, addrs[i], rl.files[i], t.TempDir())
				if err != nil {
					return err
				}
				origins = append(origins, p)
				if _, err := originReady(kinds[i], l.Backend, addrs[i], p, 10*time.Second); err != nil {
					return err
				}
			}
			return nil
		},
	})
	return rl
}

// curlHost GETs path from the frontend at port with curl, sending host
// as the Host header, and returns the status, the Proxy-Status header
// and the body.
func curlHost(t *testing.T, env *enginelab.Env, port int, host, path string) (status, proxyStatus, body string) {
	t.Helper()
	out, err := runIn(t, env.StartClient, 20*time.Second, "curl", "--http1.1", "-sS", "-m", "5", "-D", "-",
		"-H", "Host: "+host, fmt.Sprintf("http://198.18.1.1:%d%s", port, path))
	if err != nil {
		t.Fatalf("curl %s%s: %v\n%s", host, path, err, out)
	}
	return parseCurlResponse(out)
}

// parseCurlResponse reads the output of curl -D - (one response): the
// status, the Proxy-Status header and the body.
func parseCurlResponse(out string) (status, proxyStatus, body string) {
	head, body, _ := strings.Cut(out, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	if f := strings.Fields(lines[0]); len(f) > 1 {
		status = f[1]
	}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Proxy-Status") {
			proxyStatus = strings.TrimSpace(v)
		}
	}
	return status, proxyStatus, body
}

// routeCase is a request to routeLab's frontend with routes and a
// default backend, or (strict) to the one with a route and no default,
// and the origin that must answer it ("404": none).
type routeCase struct {
	strict           bool
	host, path, want string
}

// routeCases show every rule of routeLab's routes: per frontend of the
// default kind, 2 requests by route api, 2 by *.wild.test and 3 by the
// default; per strict one, 1 by only.test and 1 by none.
var routeCases = []routeCase{
	{false, "api.example.test", "/b/who", "b"},       // route api: host and path
	{false, "API.Example.Test.:8080", "/b/who", "b"}, // case, port and trailing dot ignored
	{false, "api.example.test", "/who", "a"},         // path does not match: default
	{false, "x.wild.test", "/who", "b"},              // wildcard, one label
	{false, "x.y.wild.test:8080", "/b/who", "b"},     // wildcard, two labels
	{false, "wild.test", "/who", "a"},                // the wildcard needs a label: default
	{false, "other.test", "/b/who", "a"},             // nothing matches: default
	{true, "only.test", "/who", "a"},                 // strict: its one route
	{true, "other.test", "/who", "404"},              // strict: no route, no default
}

// check fails t unless the response (status, Proxy-Status, body) of the
// request (sent to where) is what tc wants.
func (tc routeCase) check(t *testing.T, where, status, ps, body string) {
	t.Helper()
	switch {
	case tc.want == "404":
		if status != "404" || ps != "" {
			t.Errorf("%s %s%s: status %s, Proxy-Status %q; want 404 without Proxy-Status", where, tc.host, tc.path, status, ps)
		}
	case status != "200" || body != tc.want:
		t.Errorf("%s %s%s: %s %q, want 200 from origin %s", where, tc.host, tc.path, status, body, tc.want)
	}
}

// Routes by host (exact, wildcard) and path prefix, the default route and
// 404 without one, with curl through the engine to gtlsserver and caddy;
// then a reload changes the routes without a restart.
func TestLabRoutes(t *testing.T) {
	rl := startRouteLab(t, "", "")
	env := rl.env
	for _, tc := range routeCases {
		port := 8080
		if tc.strict {
			port = 8081
		}
		status, ps, body := curlHost(t, env, port, tc.host, tc.path)
		tc.check(t, fmt.Sprintf(":%d", port), status, ps, body)
	}
	text := metricsText(t, env)
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{`frontend="http"`, `route="api"`}, 2},
		{[]string{`frontend="http"`, `route="*.wild.test"`}, 2},
		{[]string{`frontend="http"`, `route="default"`}, 3},
		{[]string{`frontend="strict"`, `route="only.test"`}, 1},
	} {
		if got, _ := metricSum(text, regexp.MustCompile(`^xdpnet_route_requests_total$`), c.labels...); got != c.want {
			t.Errorf("xdpnet_route_requests_total %v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got, _ := metricSum(text, regexp.MustCompile(`^xdpnet_requests_total$`), `frontend="strict"`, `result="no_route"`); got != 1 {
		t.Errorf("no_route requests = %v, want 1", got)
	}

	// A reload sends route api to backend a and adds a route to b by
	// path alone: kept frontends switch routes without a restart.
	cfg, err := config.Parse([]byte(routeConfig(rl.files, `{name: api, host: api.example.test, backend: a}, {path_prefix: /b/, backend: b}`, "", "")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Admin = env.Config.Admin
	if err := env.Engine.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ host, path, want string }{
		{"api.example.test", "/b/who", "a"},
		{"other.test", "/b/who", "b"},
		{"other.test", "/who", "a"},
	} {
		if status, _, body := curlHost(t, env, 8080, tc.host, tc.path); status != "200" || body != tc.want {
			t.Errorf("after reload %s%s: %s %q, want 200 from origin %s", tc.host, tc.path, status, body, tc.want)
		}
	}
}

// A route's own request timeout and retries replace its backend's for
// the route's requests, on every HTTP frontend (curl over HTTP/1.1, over
// HTTPS with HTTP/1.1 and HTTP/2, quic-go over HTTP/3) through the engine
// to the lab's origins (their /sleep answers late on demand; the second
// origin is stopped, so backend "dead" only has a server that refuses).
func TestLabRouteTimeoutsAndRetries(t *testing.T) {
	cert := writeLabCert(t, filepath.Join(t.TempDir(), "fe"), routeTLSNames...)
	const routes = `
      - {name: fast, host: fast.test, backend: be, timeouts: {request: 300ms}}
      - {name: once, host: once.test, backend: dead, retries: 0}
      - {name: thrice, host: thrice.test, backend: dead}`
	env := startLab(t, "xdp", enginelab.Options{Config: fmt.Sprintf(`dataplane: xdp
admin: 127.0.0.1:0
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - name: http
    listen: "198.18.1.1:8080"
    protocol: http
    backend: be
    routes:%[1]s
  - name: https
    listen: "198.18.1.1:8443"
    protocol: https
    backend: be
    tls: {cert: %[2]q, key: %[3]q}
    routes:%[1]s
  - name: h3
    listen: "198.18.1.1:8443"
    protocol: h3
    backend: be
    routes:%[1]s
backends:
  - name: be
    health_check: {interval: 500ms, timeout: 400ms}
    timeouts: {request: 10s}
    servers: [{address: "198.18.2.10:4433"}]
  - name: dead
    retries: 2
    health_check: {enabled: false}
    servers: [{address: "198.18.2.11:4433"}]
`, routes, cert.cert, cert.key)})
	env.StopOrigin(1)

	retries := func() float64 {
		v, _ := metricSum(metricsText(t, env), regexp.MustCompile(`^xdpnet_retries_total$`), `backend="dead"`)
		return v
	}
	for _, c := range routeClients(t, env, cert.cert) {
		t.Run(c.name, func(t *testing.T) {
			status, ps, body := c.get(t, c.port, "fast.test", "/sleep?d=3s")
			if status != "504" || ps == "" || !strings.Contains(body, "route fast") {
				t.Errorf("fast.test /sleep?d=3s: %s, Proxy-Status %q, body %q; want 504 with Proxy-Status naming route fast (its 300ms request timeout)", status, ps, body)
			}
			if status, _, body := c.get(t, c.port, "other.test", "/sleep?d=1s"); status != "200" {
				t.Errorf("other.test /sleep?d=1s: %s %q; want 200 (the backend's 10s request timeout)", status, body)
			}

			before := retries()
			status, _, body = c.get(t, c.port, "once.test", "/")
			if !strings.HasPrefix(status, "5") || !strings.Contains(body, "route once") {
				t.Errorf("once.test: %s %q; want a 5xx naming route once", status, body)
			}
			if d := retries() - before; d != 0 {
				t.Errorf("route once (retries: 0) made %v retries", d)
			}
			before = retries()
			if status, _, _ := c.get(t, c.port, "thrice.test", "/"); !strings.HasPrefix(status, "5") {
				t.Errorf("thrice.test: %s; want a 5xx", status)
			}
			if d := retries() - before; d < 1 {
				t.Errorf("route thrice (the backend's retries: 2) made %v retries, want at least 1", d)
			}
		})
	}
}
