package quicmux

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTLSFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := WriteSelfSigned(dir, []string{"backend.lab", "198.18.2.10"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	cert, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := LoadCertPool(certFile)
	if err != nil {
		t.Fatal(err)
	}
	// A TLS 1.3 handshake in memory with the loaded files, by name and by IP.
	for _, name := range []string{"backend.lab", "198.18.2.10"} {
		a, b := tlsPipe(t, ServerTLS(cert), ClientTLS(name, pool, ALPNRaw))
		if a.ConnectionState().NegotiatedProtocol != ALPNRaw || a.ConnectionState().Version != tls.VersionTLS13 {
			t.Fatalf("%s: alpn %q version %x", name, a.ConnectionState().NegotiatedProtocol, a.ConnectionState().Version)
		}
		// Close the pipe, not the TLS conns: a close_notify on an
		// unread net.Pipe waits for its 5s write deadline.
		a.NetConn().Close()
		b.NetConn().Close()
	}
}

func TestTLSBadFiles(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	if _, err := LoadKeyPair(junk, junk); !errors.Is(err, errBadCertificate) {
		t.Fatalf("LoadKeyPair(junk): %v", err)
	}
	if _, err := LoadKeyPair(filepath.Join(dir, "missing"), junk); !errors.Is(err, errBadCertificate) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadKeyPair(missing): %v", err)
	}
	if _, err := LoadCertPool(junk); !errors.Is(err, errBadCertificate) {
		t.Fatalf("LoadCertPool(junk): %v", err)
	}
	if _, _, err := SelfSigned(nil, time.Hour); !errors.Is(err, errBadCertificate) {
		t.Fatalf("SelfSigned without hosts: %v", err)
	}
}

// tlsPipe completes a TLS handshake over net.Pipe.
func tlsPipe(t *testing.T, srv, cli *tls.Config) (client, server *tls.Conn) {
	t.Helper()
	a, b := net.Pipe()
	client, server = tls.Client(a, cli), tls.Server(b, srv)
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return client, server
}
