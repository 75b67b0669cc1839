package config

import (
	"fmt"
	"strings"
)

// Route sends the requests of an http or h3 frontend that match it to a
// backend. A frontend's routes are tried in the order of the configuration
// and the first whose host and path_prefix both match wins (HAProxy's
// use_backend rules and Envoy's route list read the same way): put the
// specific routes before the general ones. A request no route matches goes
// to the frontend's own backend (the default route), or gets 404 when the
// frontend has none.
//
// Several routes and frontends naming one backend share its servers,
// health checks and connection pools.
type Route struct {
	// Name labels the route in logs, errors and metrics; default
	// "<host><path_prefix>" (e.g. "api.example.com/v1/"), or "route<i>"
	// when the route has neither.
	Name string `yaml:"name"`
	// Host matches the request's authority (Host header or :authority),
	// compared case-insensitively, without its port and trailing dot:
	// "api.example.com" matches that name only; "*.example.com" matches
	// any name ending in ".example.com", with one or more labels before it
	// (a.example.com and a.b.example.com, not example.com), as Envoy's
	// suffix wildcards. Empty: any host.
	Host string `yaml:"host"`
	// PathPrefix matches the start of the request's percent-decoded path
	// (net/http's URL.Path: /v1%2Fx is /v1/x), byte for byte and with no
	// other normalisation: "/v1/" matches /v1/users and /v1/../x, not /v1.
	// Empty: any path. It must start with "/".
	PathPrefix string `yaml:"path_prefix"`
	// Backend is the name of the backend the route sends to (an HTTP
	// backend, not raw).
	Backend string `yaml:"backend"`
	// Timeouts override the backend's request and probe timeouts for the
	// requests of this route (0: the backend's).
	Timeouts RouteTimeout `yaml:"timeouts"`
	// Retries overrides the backend's retries for this route's requests,
	// 0..10 (unset: the backend's).
	Retries *int `yaml:"retries"`
}

// RouteTimeout is what a route may override of its backend's timeouts
// (see [BackTimeout]).
type RouteTimeout struct {
	// Request bounds the wait for response headers. Unset: the backend's.
	Request Duration `yaml:"request"`
	// Probe is when a waiting request's connection is PINGed. Unset: the
	// backend's, or half of the route's request timeout if that is less.
	Probe Duration `yaml:"probe"`
}

// Effective returns the route's retries and request and probe timeouts:
// its own where set, else b's.
func (r *Route) Effective(b *Backend) (retries int, request, probe Duration) {
	retries, request, probe = *b.Retries, b.Timeouts.Request, b.Timeouts.Probe
	if r.Retries != nil {
		retries = *r.Retries
	}
	if r.Timeouts.Request > 0 {
		request = r.Timeouts.Request
		if r.Timeouts.Probe == 0 && probe >= request {
			probe = request / 2
		}
	}
	if r.Timeouts.Probe > 0 {
		probe = r.Timeouts.Probe
	}
	return retries, request, probe
}

// validateRoutes checks the routes of frontend f (at field prefix p)
// against the backends and names the routes that have no name.
func validateRoutes(f *Frontend, p string, backends map[string]*Backend, bad func(field, format string, args ...any)) {
	if len(f.Routes) > 0 && f.Protocol == ProtoTCP {
		bad(p+".routes", "a tcp frontend has no requests to route; only http, https and h3 frontends take routes")
		return
	}
	names := map[string]bool{}
	for i := range f.Routes {
		r := &f.Routes[i]
		rp := fmt.Sprintf("%s.routes[%d]", p, i)
		r.Host = strings.TrimSuffix(strings.ToLower(r.Host), ".")
		if err := checkRouteHost(r.Host); err != "" {
			bad(rp+".host", "%q %s", r.Host, err)
		}
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			bad(rp+".path_prefix", "%q must start with /", r.PathPrefix)
		}
		if r.Name == "" {
			r.Name = r.Host + r.PathPrefix
			if r.Name == "" {
				r.Name = fmt.Sprintf("route%d", i)
			}
		}
		if names[r.Name] {
			bad(rp+".name", "route %q named twice in this frontend", r.Name)
		}
		names[r.Name] = true
		b := backends[r.Backend]
		switch {
		case r.Backend == "":
			bad(rp+".backend", "missing")
		case b == nil:
			bad(rp+".backend", "no backend named %q", r.Backend)
		case b.Protocol == BackendRaw:
			bad(rp+".backend", "a route needs an HTTP backend, %q has protocol raw (for tcp frontends)", b.Name)
		}
		if r.Retries != nil && (*r.Retries < 0 || *r.Retries > 10) {
			bad(rp+".retries", "%d is outside 0..10", *r.Retries)
		}
		if r.Timeouts.Request < 0 || r.Timeouts.Probe < 0 {
			bad(rp+".timeouts", "must not be negative")
		}
		if b != nil {
			if _, req, probe := r.Effective(b); req > 0 && probe >= req {
				bad(rp+".timeouts.probe", "%v must be below the request timeout (%v)", probe.D(), req.D())
			}
		}
	}
}

// checkRouteHost returns what is wrong with a route's host (lower case),
// or "".
func checkRouteHost(h string) string {
	if h == "" {
		return ""
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
	}
	if strings.ContainsAny(name, "*") {
		return "is not a host name or *.<suffix> (a wildcard stands for whole leading labels only)"
	}
	if strings.Contains(name, ":") {
		return "has a port or is an IPv6 address: routes match the host without its port"
	}
	for l := range strings.SplitSeq(name, ".") {
		if l == "" {
			return "has an empty label"
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("has %q, not a host name character", c)
			}
		}
	}
	return ""
}
