package frontend

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/xdpnet/xdpnet/engine/backend"
	"github.com/xdpnet/xdpnet/engine/config"
)

// DefaultRoute names the route of requests that no configured route
// matched and that went to the frontend's own backend.
const DefaultRoute = "default"

// route is one configured route of a frontend, resolved to its backend,
// with the retries and timeouts its requests use (its own or the
// backend's, config.Route.Effective).
type route struct {
	name   string
	host   string // lower case, no trailing dot; "" any
	suffix bool   // host is "*.<suffix>": match names ending in "." + host[2:]
	prefix string
	be     *backend.Backend

	retries        int
	request, probe time.Duration
}

// routeTable is a frontend's routes in match order, and its default route
// (nil when the frontend has no backend of its own). A reload swaps the
// whole table (Frontend.SwapRoutes).
type routeTable struct {
	routes []route
	def    *route
}

// newRouteTable resolves the routes of f to backends (by name; the
// configuration was validated, so every name resolves).
func newRouteTable(f *config.Frontend, backends map[string]*backend.Backend) *routeTable {
	t := &routeTable{}
	mk := func(name string, rc *config.Route, be *backend.Backend) route {
		r := newRoute(name, rc.Host, rc.PathPrefix)
		retries, req, probe := rc.Effective(be.Config())
		r.be, r.retries, r.request, r.probe = be, retries, req.D(), probe.D()
		return r
	}
	for i := range f.Routes {
		rc := &f.Routes[i]
		t.routes = append(t.routes, mk(rc.Name, rc, backends[rc.Backend]))
	}
	if be := backends[f.Backend]; be != nil {
		d := mk(DefaultRoute, &config.Route{}, be)
		t.def = &d
	}
	return t
}

// newRoute is a route matching host (validated, lower case; "*.<suffix>"
// for a wildcard) and path prefix.
func newRoute(name, host, prefix string) route {
	r := route{name: name, host: host, prefix: prefix}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		r.host, r.suffix = "."+rest, true
	}
	return r
}

// match returns the first route matching host (the request's authority)
// and path, else the default route, else nil.
func (t *routeTable) match(authority, path string) *route {
	if len(t.routes) == 0 {
		return t.def
	}
	host := routeHost(authority)
	for i := range t.routes {
		r := &t.routes[i]
		if r.matchHost(host) && strings.HasPrefix(path, r.prefix) {
			return r
		}
	}
	return t.def
}

func (r *route) matchHost(host string) bool {
	switch {
	case r.host == "":
		return true
	case r.suffix:
		return len(host) > len(r.host) && strings.HasSuffix(host, r.host)
	}
	return host == r.host
}

// routeHost is the host of an authority as routes compare it: without
// port, brackets and trailing dot, in lower case.
func routeHost(authority string) string {
	h := authority
	if host, _, err := net.SplitHostPort(authority); err == nil {
		h = host
	} else {
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// acquireRoute returns the route of a request to authority and path (nil:
// none matches and there is no default), its backend counted in use until
// the caller calls its Release. A backend a reload swapped out is skipped
// for its successor, so retirement only waits for work that started
// before.
func (fe *Frontend) acquireRoute(authority, path string) *route {
	for {
		t := fe.routes.Load()
		r := t.match(authority, path)
		if r == nil {
			return nil
		}
		if !r.be.Use() || fe.routes.Load() == t {
			return r
		}
		r.be.Release()
	}
}

// SwapRoutes makes the routes and default backend of f, resolved in
// backends, those of new requests and tunnels (a reload).
func (fe *Frontend) SwapRoutes(f *config.Frontend, backends map[string]*backend.Backend) {
	fe.routes.Store(newRouteTable(f, backends))
}

// notFound answers a request that no route matches on a frontend without
// a default backend. Unlike the gateway's backend errors it carries no
// Proxy-Status (RFC 9209): no next hop was tried; the resource is simply
// not served here.
func notFound(w http.ResponseWriter) int {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprintln(w, "404 Not Found: no route")
	return http.StatusNotFound
}
