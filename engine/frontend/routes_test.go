package frontend

import "testing"

func TestRouteTableMatch(t *testing.T) {
	def := &route{name: DefaultRoute}
	tab := &routeTable{routes: []route{
		newRoute("api-v1", "api.example.com", "/v1/"),
		newRoute("wild", "*.example.com", ""),
		newRoute("static", "", "/static/"),
	}, def: def}
	for _, tc := range []struct{ authority, path, want string }{
		{"api.example.com", "/v1/users", "api-v1"},
		{"API.Example.com:8080", "/v1/", "api-v1"},
		{"api.example.com.", "/v1/x", "api-v1"},
		{"api.example.com", "/v1", "wild"}, // prefix is byte for byte: /v1 is not /v1/
		{"a.b.example.com", "/", "wild"},   // one or more labels
		{"example.com", "/static/x", "static"},
		{"badexample.com", "/", DefaultRoute}, // a suffix match starts at a label
		{"example.com", "/", DefaultRoute},
		{"[2001:2:0:1::1]:80", "/static/a", "static"},
		{"", "/", DefaultRoute},
	} {
		if r := tab.match(tc.authority, tc.path); r == nil || r.name != tc.want {
			t.Errorf("match(%q, %q) = %v, want %s", tc.authority, tc.path, r, tc.want)
		}
	}
	tab.def = nil
	if r := tab.match("other.org", "/"); r != nil {
		t.Errorf("no default: match = %s, want none", r.name)
	}
}
