package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseConfigProxyProtocol(t *testing.T) {
	text := strings.Replace(goodConfig, "protocol: tcp, backend: tunnel}", "protocol: tcp, backend: tunnel, proxy_protocol: {trusted: [198.18.1.2/32, \"2001:2:0:1::/64\"]}}", 1)
	text = strings.Replace(text, "protocol: raw\n", "protocol: raw\n    send_proxy_protocol: v2\n", 1)
	c, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	pp := c.Frontends[2].ProxyProtocol
	if pp.Timeout.D() != 5*time.Second || len(pp.TrustedPrefixes()) != 2 {
		t.Errorf("proxy_protocol: %+v", pp)
	}
	for a, want := range map[string]bool{"198.18.1.2": true, "::ffff:198.18.1.2": true, "198.18.1.3": false, "2001:2:0:1::9": true} {
		if got := pp.Trusts(netip.MustParseAddr(a)); got != want {
			t.Errorf("Trusts(%s) = %v", a, got)
		}
	}
	if c.Backends[1].SendProxyProtocol != "v2" {
		t.Errorf("send_proxy_protocol %q", c.Backends[1].SendProxyProtocol)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"h3", strings.Replace(goodConfig, "protocol: h3, backend: origins}", "protocol: h3, backend: origins, proxy_protocol: {trusted: [198.18.1.2/32]}}", 1), "frontends[1].proxy_protocol: the PROXY protocol is for TCP frontends"},
		{"no trusted", strings.Replace(goodConfig, "protocol: http, backend: origins}", "protocol: http, backend: origins, proxy_protocol: {timeout: 1s}}", 1), "frontends[0].proxy_protocol.trusted: at least one"},
		{"bad prefix", strings.Replace(goodConfig, "protocol: http, backend: origins}", "protocol: http, backend: origins, proxy_protocol: {trusted: [198.18.1.2]}}", 1), `frontends[0].proxy_protocol.trusted[0]: "198.18.1.2" is not a prefix`},
		{"negative timeout", strings.Replace(goodConfig, "protocol: http, backend: origins}", "protocol: http, backend: origins, proxy_protocol: {trusted: [198.18.1.2/32], timeout: -1s}}", 1), "frontends[0].proxy_protocol.timeout: must be positive"},
		{"send v1", strings.Replace(goodConfig, "protocol: raw\n", "protocol: raw\n    send_proxy_protocol: v1\n", 1), `backends[1].send_proxy_protocol: "v1": only v2`},
		{"send on h3", strings.Replace(goodConfig, "balance: hash\n", "balance: hash\n    send_proxy_protocol: v2\n", 1), "backends[0].send_proxy_protocol: only raw backends"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
