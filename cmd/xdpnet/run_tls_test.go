package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// `xdpnet run` with an https frontend on the kernel stack: SIGHUP reads
// the certificate files again (a client kept alive across it keeps its
// connection, a new one gets the new certificate); SIGHUP with a broken
// file is refused, naming the file, and the running certificate stays.
func TestRunSIGHUPReloadsCertificates(t *testing.T) {
	dir := t.TempDir()
	_, pc, originCert := startLoopOrigin(t, dir)

	// The frontend's certificate files, and the next certificate aside.
	site := filepath.Join(dir, "site")
	next := filepath.Join(dir, "next")
	for _, d := range []string{site, next} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	siteCert, siteKey, err := quicmux.WriteSelfSigned(site, []string{"a.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nextCert, nextKey, err := quicmux.WriteSelfSigned(next, []string{"a.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	leaf := func(certFile, keyFile string) *x509.Certificate {
		t.Helper()
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(c.Leaf)
		return c.Leaf
	}
	first, second := leaf(siteCert, siteKey), leaf(nextCert, nextKey)

	admin, front := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "x.yaml")
	text := fmt.Sprintf(`dataplane: kernel
workers: 1
admin: %q
frontends: [{name: web, listen: %q, protocol: https, backend: b, tls: {cert: %s, key: %s}}]
backends:
  - name: b
    tls: {ca: %q}
    servers: [{name: o, address: %q}]
`, admin, front, siteCert, siteKey, originCert, pc.LocalAddr())
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr := startRun(t, cfg)

	// served GETs with c and returns the certificate of its connection.
	served := func(c *http.Client) (*x509.Certificate, error) {
		resp, err := c.Get("https://a.example/bytes/100")
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("status %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0], nil
	}
	client := func(keepAlive bool) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, front)
			},
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			DisableKeepAlives: !keepAlive,
			ForceAttemptHTTP2: true,
		}}
	}
	kept := client(true)
	var getErr error
	if !testutil.Eventually(func() bool { _, getErr = served(kept); return getErr == nil }) {
		t.Fatalf("the https frontend did not answer: %v\n%s", getErr, stderr.String())
	}

	// The next certificate in place of the first, then SIGHUP.
	for from, to := range map[string]string{nextCert: siteCert, nextKey: siteKey} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, stderr, "configuration reloaded")
	if got, err := served(client(false)); err != nil || !got.Equal(second) {
		t.Errorf("new connection after SIGHUP: %v, want the new certificate", err)
	}
	if got, err := served(kept); err != nil || !got.Equal(first) {
		t.Errorf("kept-alive connection after SIGHUP: %v, want it still up with the first certificate", err)
	}

	// A broken file: refused, named, and the running certificate stays.
	if err := os.WriteFile(siteCert, []byte("broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, stderr, "reload refused")
	waitFor(t, stderr, siteCert)
	if got, err := served(client(false)); err != nil || !got.Equal(second) {
		t.Errorf("new connection after a refused reload: %v, want the running certificate", err)
	}
}
