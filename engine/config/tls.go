package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// ServerTLS is the certificates of an https or h3 frontend, read from PEM
// files. Cert and Key are shorthand for a one-entry Certificates list; with
// both, they come first. The first certificate is the default: it answers
// a client that sends no SNI (RFC 6066 section 3) or a name no
// certificate's DNS names match; the others are chosen by SNI (see
// package frontend). An https frontend needs one; an h3 frontend without
// files serves those of the https frontend that advertises it (AltSvc),
// else a self-signed certificate it makes (lab use; logged as a warning).
//
// The files are read and checked by [Config.Validate], so a bad or missing
// file is a configuration error naming it, and a reload (SIGHUP) that
// cannot read them keeps the running certificates. A reload reads them
// again: new handshakes get the new certificates, established connections
// keep theirs.
type ServerTLS struct {
	Cert         string     `yaml:"cert"`
	Key          string     `yaml:"key"`
	Certificates []CertFile `yaml:"certificates"`

	loaded []tls.Certificate
}

// CertFile is one certificate: a PEM chain (leaf first) and its key.
type CertFile struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Files is every certificate, the shorthand first.
func (t *ServerTLS) Files() []CertFile {
	if t == nil {
		return nil
	}
	var fs []CertFile
	if t.Cert != "" || t.Key != "" {
		fs = append(fs, CertFile{Cert: t.Cert, Key: t.Key})
	}
	return append(fs, t.Certificates...)
}

// Loaded is the certificates [Config.Validate] read, in Files order (their
// Leaf set), or nil when t has no files.
func (t *ServerTLS) Loaded() []tls.Certificate {
	if t == nil {
		return nil
	}
	return t.loaded
}

// AltSvc is what an http or https frontend advertises in Alt-Svc (RFC
// 7838): an h3 frontend clients may switch to.
type AltSvc struct {
	// H3 names the h3 frontend advertised, "off" for none. Unset: an
	// https frontend advertises the h3 frontend listening on its own
	// address and port (UDP beside TCP, as Caddy does), if there is one;
	// an http frontend advertises nothing. The h3 frontend must serve the
	// same backend and routes (for the default, one that does not is not
	// advertised). An h3 frontend without
	// certificate files that an https frontend advertises serves that
	// frontend's certificates.
	H3 string `yaml:"h3"`
	// MaxAge is how long a client may remember the alternative (the ma
	// parameter, RFC 7838 section 3). Default 24h, RFC 7838's own default.
	MaxAge Duration `yaml:"max_age"`
}

// AltSvcHeader is the Alt-Svc value the frontend sends on every response
// (set by [Config.Validate]), or "" when it advertises nothing.
func (f *Frontend) AltSvcHeader() string { return f.altSvc }

// WithoutReloadable is f without what a reload applies to a running
// frontend: its name, backend and routes, certificates and Alt-Svc (the
// header resolved from other frontends included). What differs between two
// frontends' WithoutReloadable needs a restart.
func (f Frontend) WithoutReloadable() Frontend {
	f.Name, f.Backend, f.Routes, f.TLS, f.AltSvc, f.altSvc = "", "", nil, nil, nil, ""
	return f
}

// validateTLS checks frontend f's tls block (at field path p) and reads its
// certificates.
func validateTLS(f *Frontend, p string, bad func(field, format string, args ...any)) {
	switch {
	case f.TLS != nil && f.Protocol != ProtoH3 && f.Protocol != ProtoHTTPS:
		bad(p+".tls", "only https and h3 frontends take certificates")
		return
	case f.Protocol == ProtoHTTPS && len(f.TLS.Files()) == 0:
		bad(p+".tls", "an https frontend needs a certificate: tls.cert and tls.key, or tls.certificates")
		return
	case f.TLS == nil:
		return
	}
	f.TLS.loaded = nil
	for i, cf := range f.TLS.Files() {
		fp := p + ".tls"
		if f.TLS.Cert != "" || f.TLS.Key != "" {
			if i > 0 {
				fp += fmt.Sprintf(".certificates[%d]", i-1)
			}
		} else {
			fp += fmt.Sprintf(".certificates[%d]", i)
		}
		if cf.Cert == "" || cf.Key == "" {
			bad(fp, "cert and key go together")
			continue
		}
		cert, err := loadCertFile(cf)
		if err != nil {
			bad(fp, "%v", err)
			continue
		}
		if i > 0 && len(cert.Leaf.DNSNames) == 0 {
			bad(fp+".cert", "%s has no DNS names (subjectAltName): only the first certificate, the default, can be chosen without one", cf.Cert)
		}
		f.TLS.loaded = append(f.TLS.loaded, cert)
	}
}

// loadCertFile reads and parses one certificate and its key. Every error
// names the file it is about.
func loadCertFile(cf CertFile) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(cf.Cert)
	if err != nil {
		return tls.Certificate{}, err // *PathError: names the file
	}
	keyPEM, err := os.ReadFile(cf.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cert %s, key %s: %w", cf.Cert, cf.Key, err)
	}
	if cert.Leaf == nil { // GODEBUG x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("cert %s: %w", cf.Cert, err)
		}
	}
	return cert, nil
}

// validateAltSvc resolves the Alt-Svc of every http and https frontend
// once all listen addresses are known.
func (c *Config) validateAltSvc(bad func(field, format string, args ...any)) {
	for i := range c.Frontends {
		f := &c.Frontends[i]
		p := fmt.Sprintf("frontends[%d].alt_svc", i)
		f.altSvc = ""
		if f.AltSvc == nil {
			if f.Protocol == ProtoHTTPS {
				if h3 := c.sameAddrH3(f.addr); h3 != nil && sameContent(f, h3) {
					f.altSvc = altSvcValue(h3.addr.Port(), 24*time.Hour)
					shareCertificates(f, h3)
				}
			}
			continue
		}
		if f.Protocol != ProtoHTTP && f.Protocol != ProtoHTTPS {
			bad(p, "only http and https frontends advertise an h3 frontend")
			continue
		}
		ma := f.AltSvc.MaxAge.D()
		if ma == 0 {
			ma = 24 * time.Hour
		}
		if ma < time.Second {
			bad(p+".max_age", "%v is below 1s", ma)
		}
		var h3 *Frontend
		switch name := f.AltSvc.H3; name {
		case "off":
			continue
		case "":
			if h3 = c.sameAddrH3(f.addr); h3 == nil {
				bad(p+".h3", "missing, and no h3 frontend listens on %s", f.addr)
				continue
			}
		default:
			for j := range c.Frontends {
				if c.Frontends[j].Name == name {
					h3 = &c.Frontends[j]
				}
			}
			switch {
			case h3 == nil:
				bad(p+".h3", "no frontend named %q", name)
				continue
			case h3.Protocol != ProtoH3:
				bad(p+".h3", "frontend %q is %s, not h3", name, h3.Protocol)
				continue
			}
		}
		if !sameContent(f, h3) {
			bad(p+".h3", "frontend %q has another backend or other routes: an alternative service must serve the same content (RFC 7838 section 2)", h3.Name)
			continue
		}
		// ":port" names the same host as the request (RFC 7838 section
		// 2.1): the client resolves it as it resolved this frontend, so
		// the h3 frontend must listen where that name leads.
		if a, b := h3.addr.Addr(), f.addr.Addr(); a.IsValid() && b.IsValid() && a != b && !a.IsUnspecified() {
			bad(p+".h3", "frontend %q listens on %s, this one on %s: Alt-Svc names a port on the same host", h3.Name, a, b)
			continue
		}
		f.altSvc = altSvcValue(h3.addr.Port(), ma)
		shareCertificates(f, h3)
	}
}

// shareCertificates gives an h3 frontend without certificate files those
// of the https frontend f that advertises it: clients switching to it by
// Alt-Svc must be able to authenticate it as the same origin (RFC 7838
// section 2.1), and listing the files once keeps them from drifting
// apart. The first advertising frontend wins.
func shareCertificates(f, h3 *Frontend) {
	if f.Protocol == ProtoHTTPS && len(h3.TLS.Files()) == 0 && len(f.TLS.Loaded()) > 0 {
		h3.TLS = f.TLS
	}
}

// sameContent reports whether frontends f and g send requests to the same
// backends: same default backend and same routes.
func sameContent(f, g *Frontend) bool {
	return f.Backend == g.Backend && (len(f.Routes) == 0 && len(g.Routes) == 0 || reflect.DeepEqual(f.Routes, g.Routes))
}

// sameAddrH3 is the h3 frontend listening on ap (UDP), or nil.
func (c *Config) sameAddrH3(ap netip.AddrPort) *Frontend {
	for j := range c.Frontends {
		if g := &c.Frontends[j]; g.Protocol == ProtoH3 && g.addr == ap && ap.IsValid() {
			return g
		}
	}
	return nil
}

// altSvcValue is the Alt-Svc field value for HTTP/3 (ALPN "h3", RFC 9114
// section 3.1.1) on port, remembered for ma.
func altSvcValue(port uint16, ma time.Duration) string {
	var b strings.Builder
	b.WriteString(`h3=":`)
	b.WriteString(strconv.Itoa(int(port)))
	b.WriteString(`"; ma=`)
	b.WriteString(strconv.FormatInt(int64(ma/time.Second), 10))
	return b.String()
}
