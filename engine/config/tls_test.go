package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// tlsConfig is goodConfig with an https frontend on TCP 443 beside the h3
// one on UDP 443, its tls block given by tlsBlock, and extra frontend keys.
func tlsConfig(tlsBlock, extra string) string {
	fe := `  - {name: tls, listen: "198.18.1.1:443", protocol: https, backend: origins, tls: ` + tlsBlock + extra + `}` + "\n"
	return strings.Replace(goodConfig, "frontends:\n", "frontends:\n"+fe, 1)
}

// writeCert writes a self-signed certificate for hosts into a new
// directory and returns its cert and key paths.
func writeCert(t *testing.T, hosts ...string) (string, string) {
	t.Helper()
	d := filepath.Join(t.TempDir(), hosts[0])
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	c, k, err := quicmux.WriteSelfSigned(d, hosts, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func TestParseConfigTLS(t *testing.T) {
	ac, ak := writeCert(t, "a.example", "198.18.1.1")
	bc, bk := writeCert(t, "*.b.example")
	c, err := Parse([]byte(tlsConfig("{cert: "+ac+", key: "+ak+", certificates: [{cert: "+bc+", key: "+bk+"}]}", "")))
	if err != nil {
		t.Fatal(err)
	}
	f := c.Frontends[0]
	if got := f.TLS.Loaded(); len(got) != 2 || got[0].Leaf.DNSNames[0] != "a.example" || got[1].Leaf.DNSNames[0] != "*.b.example" {
		t.Fatalf("loaded %d certificates, shorthand first: %+v", len(got), got)
	}
	// The https frontend advertises the h3 frontend on its address and
	// port by default; the http one nothing.
	if got, want := f.AltSvcHeader(), `h3=":443"; ma=86400`; got != want {
		t.Errorf("https Alt-Svc %q, want %q", got, want)
	}
	if got := c.Frontends[1].AltSvcHeader(); got != "" {
		t.Errorf("http Alt-Svc %q by default, want none", got)
	}
	// The h3 frontend it advertises has no files: it serves the https
	// frontend's certificates.
	if h3 := c.Frontends[2]; h3.Name != "web3" || len(h3.TLS.Loaded()) != 2 {
		t.Errorf("h3 frontend %s: %d certificates, want the https frontend's 2", h3.Name, len(h3.TLS.Loaded()))
	}

	// An h3 frontend on the same address with another backend is not
	// advertised by default: it does not serve the same content.
	other := strings.Replace(tlsConfig("{cert: "+ac+", key: "+ak+"}", ""), "protocol: h3, backend: origins", "protocol: h3, backend: other", 1) +
		"  - {name: other, servers: [{address: \"198.18.2.12:4433\"}]}\n"
	if c, err = Parse([]byte(other)); err != nil {
		t.Fatal(err)
	}
	if got := c.Frontends[0].AltSvcHeader(); got != "" {
		t.Errorf("https Alt-Svc %q for an h3 frontend with another backend, want none", got)
	}

	// Configured: an http frontend names the h3 one, with its max-age;
	// "off" turns the https default off.
	text := tlsConfig("{cert: "+ac+", key: "+ak+"}", `, alt_svc: {h3: "off"}`)
	text = strings.Replace(text, "protocol: http, backend: origins}", "protocol: http, backend: origins, alt_svc: {h3: web3, max_age: 1h}}", 1)
	if c, err = Parse([]byte(text)); err != nil {
		t.Fatal(err)
	}
	if got := c.Frontends[0].AltSvcHeader(); got != "" {
		t.Errorf("https with alt_svc off: %q", got)
	}
	if got, want := c.Frontends[1].AltSvcHeader(), `h3=":443"; ma=3600`; got != want {
		t.Errorf("http Alt-Svc %q, want %q", got, want)
	}
}

// A certificate that cannot be used is a configuration error naming the
// field and the file.
func TestParseConfigTLSErrors(t *testing.T) {
	ac, ak := writeCert(t, "a.example")
	ipc, ipk := writeCert(t, "198.18.1.1")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, text, want string
	}{
		{"missing cert", tlsConfig("{cert: "+missing+", key: "+ak+"}", ""), "frontends[0].tls: open " + missing + ": no such file or directory"},
		{"missing key", tlsConfig("{certificates: [{cert: "+ac+", key: "+ak+"}, {cert: "+ac+", key: "+missing+"}]}", ""), "frontends[0].tls.certificates[1]: open " + missing},
		{"garbage cert", tlsConfig("{cert: "+garbage+", key: "+ak+"}", ""), "frontends[0].tls: cert " + garbage + ", key " + ak + ": tls: failed to find any PEM data in certificate input"},
		{"key of another cert", tlsConfig("{cert: "+ac+", key: "+ipk+"}", ""), "cert " + ac + ", key " + ipk + ": tls: private key does not match public key"},
		{"cert without key", tlsConfig("{cert: "+ac+"}", ""), "frontends[0].tls: cert and key go together"},
		{"https without certificate", tlsConfig("{}", ""), "frontends[0].tls: an https frontend needs a certificate"},
		{"second without DNS name", tlsConfig("{certificates: [{cert: "+ac+", key: "+ak+"}, {cert: "+ipc+", key: "+ipk+"}]}", ""), "frontends[0].tls.certificates[1].cert: " + ipc + " has no DNS names"},
		{"tls on http", strings.Replace(goodConfig, "backend: origins}", "backend: origins, tls: {cert: "+ac+", key: "+ak+"}}", 1), "frontends[0].tls: only https and h3 frontends take certificates"},
		{"alt_svc unknown", strings.Replace(goodConfig, "backend: origins}", "backend: origins, alt_svc: {h3: nope}}", 1), `frontends[0].alt_svc.h3: no frontend named "nope"`},
		{"alt_svc not h3", strings.Replace(goodConfig, "backend: origins}", "backend: origins, alt_svc: {h3: iperf}}", 1), `frontends[0].alt_svc.h3: frontend "iperf" is tcp, not h3`},
		{"alt_svc on h3", strings.Replace(goodConfig, "protocol: h3, backend: origins}", "protocol: h3, backend: origins, alt_svc: {h3: web3}}", 1), "frontends[1].alt_svc: only http and https frontends"},
		{"alt_svc other backend", strings.Replace(strings.Replace(goodConfig, "backend: origins}", "backend: origins, alt_svc: {h3: web3}}", 1), "protocol: h3, backend: origins", "protocol: h3, backend: tunnel2", 1) + "  - {name: tunnel2, servers: [{address: \"198.18.2.12:4433\"}]}\n", `frontends[0].alt_svc.h3: frontend "web3" has another backend or other routes`},
		{"alt_svc max_age", strings.Replace(goodConfig, "backend: origins}", "backend: origins, alt_svc: {h3: web3, max_age: 10ms}}", 1), "frontends[0].alt_svc.max_age: 10ms is below 1s"},
		{"alt_svc other address", strings.Replace(strings.Replace(goodConfig, "backend: origins}", "backend: origins, alt_svc: {h3: web3}}", 1), `"198.18.1.1:443"`, `"[2001:2:0:1::1]:443"`, 1), `frontend "web3" listens on 2001:2:0:1::1, this one on 198.18.1.1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// What a reload applies to a running frontend (certificates, Alt-Svc,
// backend, routes) is outside WithoutReloadable; other settings are not.
func TestFrontendWithoutReloadable(t *testing.T) {
	ac, ak := writeCert(t, "a.example")
	bc, bk := writeCert(t, "b.example")
	parse := func(tlsBlock, extra string) Frontend {
		t.Helper()
		c, err := Parse([]byte(tlsConfig(tlsBlock, extra)))
		if err != nil {
			t.Fatal(err)
		}
		return c.Frontends[0]
	}
	a := parse("{cert: "+ac+", key: "+ak+"}", "")
	b := parse("{cert: "+bc+", key: "+bk+"}", `, alt_svc: {h3: "off"}`)
	if !reflect.DeepEqual(a.WithoutReloadable(), b.WithoutReloadable()) {
		t.Errorf("certificates and Alt-Svc differ beyond them:\n%+v\n%+v", a.WithoutReloadable(), b.WithoutReloadable())
	}
	if c := parse("{cert: "+ac+", key: "+ak+"}", ", max_header_bytes: 4096"); reflect.DeepEqual(a.WithoutReloadable(), c.WithoutReloadable()) {
		t.Error("max_header_bytes is taken as reloadable")
	}
}
