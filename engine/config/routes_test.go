package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// routed is goodConfig with routes on the web frontend (frontends[0]).
func routed(routes string) string {
	return strings.Replace(goodConfig, "protocol: http, backend: origins}",
		"protocol: http, backend: origins, routes: ["+routes+"]}", 1)
}

func TestParseConfigRoutes(t *testing.T) {
	c, err := Parse([]byte(routed(`{host: API.Example.COM., path_prefix: /v1/, backend: origins, retries: 0, timeouts: {request: 1s}},
		{host: "*.example.com", backend: origins, name: wild}, {path_prefix: /static/, backend: origins}, {backend: origins}`)))
	if err != nil {
		t.Fatal(err)
	}
	rs := c.Frontends[0].Routes
	if rs[0].Host != "api.example.com" || rs[0].Name != "api.example.com/v1/" || rs[1].Name != "wild" || rs[2].Name != "/static/" || rs[3].Name != "route3" {
		t.Errorf("hosts and names: %+v", rs)
	}
	b := &c.Backends[0]
	retries, req, probe := rs[0].Effective(b)
	if retries != 0 || req.D() != time.Second || probe.D() != 500*time.Millisecond {
		t.Errorf("route 0 effective: retries %d request %v probe %v; want 0, 1s, 500ms", retries, req.D(), probe.D())
	}
	retries, req, probe = rs[1].Effective(b)
	if retries != *b.Retries || req != b.Timeouts.Request || probe != b.Timeouts.Probe {
		t.Errorf("route 1 effective: retries %d request %v probe %v; want the backend's", retries, req.D(), probe.D())
	}
	// Without a default backend, routes alone are enough.
	if _, err := Parse([]byte(strings.Replace(routed("{backend: origins}"), "protocol: http, backend: origins,", "protocol: http,", 1))); err != nil {
		t.Errorf("routes without default backend: %v", err)
	}
}

func TestParseConfigRouteErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown backend", routed("{host: a.example, backend: nope}"), `frontends[0].routes[0].backend: no backend named "nope"`},
		{"missing backend", routed("{host: a.example}"), "frontends[0].routes[0].backend: missing"},
		{"raw backend", routed("{host: a.example, backend: tunnel}"), "frontends[0].routes[0].backend: a route needs an HTTP backend"},
		{"wildcard inside", routed(`{host: "a.*.example", backend: origins}`), "frontends[0].routes[0].host"},
		{"bare wildcard", routed(`{host: "*", backend: origins}`), "frontends[0].routes[0].host"},
		{"partial label wildcard", routed(`{host: "*a.example", backend: origins}`), "frontends[0].routes[0].host"},
		{"port", routed(`{host: "a.example:80", backend: origins}`), "frontends[0].routes[0].host"},
		{"empty label", routed(`{host: "a..example", backend: origins}`), "frontends[0].routes[0].host: \"a..example\" has an empty label"},
		{"path", routed("{path_prefix: v1, backend: origins}"), `frontends[0].routes[0].path_prefix: "v1" must start with /`},
		{"duplicate name", routed("{host: a.example, backend: origins, name: x}, {host: b.example, backend: origins, name: x}"), `frontends[0].routes[1].name: route "x" named twice`},
		{"retries", routed("{backend: origins, retries: 11}"), "frontends[0].routes[0].retries: 11 is outside 0..10"},
		{"probe above request", routed("{backend: origins, timeouts: {request: 1s, probe: 2s}}"), "frontends[0].routes[0].timeouts.probe: 2s must be below the request timeout (1s)"},
		{"tcp with routes", strings.Replace(goodConfig, "protocol: tcp, backend: tunnel}", "protocol: tcp, backend: tunnel, routes: [{backend: tunnel}]}", 1), "frontends[2].routes: a tcp frontend has no requests to route"},
		{"no backend, no routes", strings.Replace(goodConfig, "protocol: http, backend: origins}", "protocol: http}", 1), "frontends[0].backend: missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q (or wrap ErrInvalid)", err, tc.want)
			}
		})
	}
}
