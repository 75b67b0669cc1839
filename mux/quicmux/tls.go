package quicmux

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ALPN protocol ids (RFC 7301) negotiated on backend QUIC connections. The
// ALPN is part of a connection's identity: reuse/ must not hand an "h3"
// connection to a tunnelled TCP flow or the reverse.
const (
	// ALPNH3 is HTTP/3 (RFC 9114 section 3.1).
	ALPNH3 = "h3"
	// ALPNRaw carries tunnelled TCP: one bidirectional QUIC stream per TCP
	// connection, bytes copied as they are, FIN for the TCP half-close.
	ALPNRaw = "xdpnet-raw/1"
)

// rawCancelCode is the application error code with which a raw-ALPN stream
// is reset (Stream.Reset): the tunnelled TCP connection was cut, and the
// far end should reset its TCP side rather than close it cleanly.
const rawCancelCode = 1

// errBadCertificate reports a certificate or key file that cannot be used.
var errBadCertificate = errors.New("mux: bad certificate")

// LoadKeyPair reads a PEM certificate chain and its private key from files.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: load %s, %s: %w", errBadCertificate, certFile, keyFile, err)
	}
	return cert, nil
}

// LoadCertPool reads PEM CA certificates from a file into a new pool, for
// verifying peers signed by a private CA (the lab's, or an operator's).
func LoadCertPool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("%w: read CA file: %w", errBadCertificate, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: no PEM certificate in %s", errBadCertificate, caFile)
	}
	return pool, nil
}

// ServerTLS returns a TLS 1.3 server configuration (QUIC requires 1.3, RFC
// 9001 section 4.2) presenting cert and accepting the given ALPNs, by default
// both ALPNH3 and ALPNRaw.
func ServerTLS(cert tls.Certificate, alpns ...string) *tls.Config {
	if len(alpns) == 0 {
		alpns = []string{ALPNH3, ALPNRaw}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   alpns,
		MinVersion:   tls.VersionTLS13,
	}
}

// ClientTLS returns a TLS 1.3 client configuration that verifies the server
// as serverName against roots (nil: the system roots) and offers one ALPN.
// One ALPN per connection keeps a connection's protocol unambiguous.
func ClientTLS(serverName string, roots *x509.CertPool, alpn string) *tls.Config {
	return &tls.Config{
		ServerName: serverName,
		RootCAs:    roots,
		NextProtos: []string{alpn},
		MinVersion: tls.VersionTLS13,
	}
}

// SelfSigned generates a self-signed ECDSA P-256 certificate for the lab,
// valid for the given host names and IP addresses for validFor, and a pool
// holding it, for clients to trust it.
func SelfSigned(hosts []string, validFor time.Duration) (tls.Certificate, *x509.CertPool, error) {
	certPEM, keyPEM, err := selfSignedPEM(hosts, validFor)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("mux: self-signed key pair: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return cert, pool, nil
}

// WriteSelfSigned generates a self-signed certificate as SelfSigned does and
// writes it to dir/cert.pem and dir/key.pem (key mode 0600), for the demo and
// for peers run as separate processes. It returns the two paths.
func WriteSelfSigned(dir string, hosts []string, validFor time.Duration) (certFile, keyFile string, err error) {
	certPEM, keyPEM, err := selfSignedPEM(hosts, validFor)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("mux: write certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("mux: write key: %w", err)
	}
	return certFile, keyFile, nil
}

func selfSignedPEM(hosts []string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, fmt.Errorf("%w: self-signed certificate needs at least one host", errBadCertificate)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("mux: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("mux: serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"xdpnet lab"}, CommonName: hosts[0]},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew between lab peers
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("mux: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("mux: marshal key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}
