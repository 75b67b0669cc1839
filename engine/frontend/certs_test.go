package frontend

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/mux/quicmux"
)

func TestCertSetPick(t *testing.T) {
	var certs []tls.Certificate
	for _, hosts := range [][]string{{"default.example", "198.18.1.1"}, {"a.example", "www.a.example"}, {"*.b.example"}, {"c.b.example"}} {
		c, _, err := quicmux.SelfSigned(hosts, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	var cs certStore
	cs.store(certs)
	for _, tc := range []struct {
		sni  string
		want int
	}{
		{"", 0},                // no SNI: the default
		{"a.example", 1},       // exact
		{"WWW.A.Example.", 1},  // case and a trailing dot do not matter
		{"x.a.example", 0},     // no wildcard for a.example
		{"x.b.example", 2},     // wildcard
		{"c.b.example", 3},     // exact before wildcard
		{"y.x.b.example", 0},   // a wildcard covers one label
		{"b.example", 0},       // nor the parent itself
		{"nothing.example", 0}, // unknown: the default
	} {
		got, err := cs.getCertificate(&tls.ClientHelloInfo{ServerName: tc.sni})
		if err != nil {
			t.Fatal(err)
		}
		if got.Leaf != certs[tc.want].Leaf {
			t.Errorf("SNI %q: got %v, want %v", tc.sni, got.Leaf.DNSNames, certs[tc.want].Leaf.DNSNames)
		}
	}
	// A new generation serves new handshakes.
	cs.store(certs[1:])
	if got, _ := cs.getCertificate(&tls.ClientHelloInfo{}); got.Leaf != certs[1].Leaf {
		t.Errorf("after store: default %v", got.Leaf.DNSNames)
	}
	var empty certStore
	if _, err := empty.getCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Error("no certificate: no error")
	}
}
