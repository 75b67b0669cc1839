package frontend

import (
	"crypto/tls"
	"errors"
	"strings"
	"sync/atomic"
)

// errNoCertificate is GetCertificate's answer when the frontend has none
// (a frontend is never started that way: config validation requires one).
var errNoCertificate = errors.New("frontend has no certificate")

// certSet is one generation of a frontend's certificates, indexed by the
// DNS names of each leaf's subjectAltName: exact names, and wildcard names
// ("*.example.com") under the parent domain ("example.com"). A name
// listed by several certificates (an ECDSA and an RSA one, say) keeps them
// in configuration order.
type certSet struct {
	def      *tls.Certificate
	exact    map[string][]*tls.Certificate
	wildcard map[string][]*tls.Certificate
}

func newCertSet(certs []tls.Certificate) *certSet {
	s := &certSet{exact: map[string][]*tls.Certificate{}, wildcard: map[string][]*tls.Certificate{}}
	for i := range certs {
		c := &certs[i]
		if s.def == nil {
			s.def = c
		}
		if c.Leaf == nil {
			continue
		}
		for _, n := range c.Leaf.DNSNames {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if parent, ok := strings.CutPrefix(n, "*."); ok {
				s.wildcard[parent] = append(s.wildcard[parent], c)
			} else {
				s.exact[n] = append(s.exact[n], c)
			}
		}
	}
	return s
}

// pick chooses the certificate for a ClientHello: one whose DNS names hold
// the SNI name exactly, else one with a wildcard for its parent domain (a
// wildcard covers one label, RFC 6125 section 6.4.3), else the default
// (the first). Among several for the same name it takes the first the
// client can use (signature algorithms, curves), else the first.
func (s *certSet) pick(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return s.def
	}
	if cs := s.exact[name]; len(cs) > 0 {
		return supported(hello, cs)
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		if cs := s.wildcard[parent]; len(cs) > 0 {
			return supported(hello, cs)
		}
	}
	return s.def
}

func supported(hello *tls.ClientHelloInfo, cs []*tls.Certificate) *tls.Certificate {
	if len(cs) > 1 {
		for _, c := range cs {
			if hello.SupportsCertificate(c) == nil {
				return c
			}
		}
	}
	return cs[0]
}

// countHandshake counts how the TLS handshake of a closed client
// connection went (xdpnet_tls_handshakes_total). Counting at close sees
// every outcome, failures included, which net/http only logs.
func (fe *Frontend) countHandshake(tc *tls.Conn) {
	cs := tc.ConnectionState()
	result := "failed"
	switch {
	case cs.HandshakeComplete && cs.DidResume:
		result = "resumed"
	case cs.HandshakeComplete:
		result = "full"
	}
	fe.env.Counters.TLSHandshakes.WithLabelValues(fe.cfg.Name, result).Inc()
}

// certStore is a frontend's current certSet behind an atomic pointer: a
// reload stores a new set, which the next handshake uses, while
// connections already established keep what they negotiated.
type certStore struct {
	set atomic.Pointer[certSet]
}

// store makes certs the certificates of new handshakes.
func (cs *certStore) store(certs []tls.Certificate) { cs.set.Store(newCertSet(certs)) }

// getCertificate is tls.Config.GetCertificate.
func (cs *certStore) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s := cs.set.Load()
	if s == nil || s.def == nil {
		return nil, errNoCertificate
	}
	return s.pick(hello), nil
}
