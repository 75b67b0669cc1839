package engine_test

// PROXY protocol v2 on the https frontend (issue 21, item 6): the header
// comes before the TLS handshake, as HAProxy's send-proxy-v2 sends it in
// front of a TLS server.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/proxyproto"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// proxiedTLSClient is a net/http client of the https frontend at front,
// over HTTP/2 (h2) or HTTP/1.1, whose every connection comes from src in
// the client namespace and sends hdr (may be nil) before its TLS
// handshake, verified against roots for x.wild.test.
func proxiedTLSClient(t *testing.T, env *enginelab.Env, src netip.Addr, front string, hdr []byte, roots *x509.CertPool, h2 bool) *http.Client {
	proto := "http/1.1"
	if h2 {
		proto = "h2"
	}
	tr := &http.Transport{
		ForceAttemptHTTP2: h2,
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var c net.Conn
			if err := env.Lab.Client.Do(func() (err error) {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
				c, err = d.DialContext(ctx, "tcp", front)
				return err
			}); err != nil {
				return nil, err
			}
			if _, err := c.Write(hdr); err != nil {
				c.Close()
				return nil, err
			}
			tc := tls.Client(c, &tls.Config{ServerName: "x.wild.test", RootCAs: roots, NextProtos: []string{proto}})
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			return tc, nil
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestLabProxyProtocolHTTPS: an https frontend that trusts 198.18.1.2
// only, in front of caddy (whose /xff answers the X-Forwarded-For it got).
// From the trusted source a header before the TLS handshake gives the
// client address to X-Forwarded-For and the access log, over HTTP/1.1 and
// HTTP/2, from the test's sender and from HAProxy (send-proxy-v2, TCP
// mode) in front of curl over HTTPS; curl over HTTPS without a header or
// with a v1 one, and a malformed header, are closed and counted. From
// 198.18.1.3 a header is never read as one (the TLS handshake fails on
// its bytes), and curl over HTTPS is served with its own address.
func TestLabProxyProtocolHTTPS(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	cert := writeLabCert(t, filepath.Join(t.TempDir(), "fe"), routeTLSNames...)
	rl := startRouteLab(t, fmt.Sprintf("access_log: {path: %q}\n", logFile),
		tlsRouteFrontends(cert, "    proxy_protocol: {trusted: [198.18.1.2/32], timeout: 2s}\n"))
	env := rl.env
	trusted, untrusted := env.Lab.ClientLink.PeerV4()[0], env.Lab.ClientLink.PeerV4()[1]
	const front = "198.18.1.1:8443"
	roots := x509.NewCertPool()
	roots.AddCert(cert.leaf)
	header := proxyproto.Header{Command: proxyproto.Proxy, Source: proxiedClient,
		Destination: netip.MustParseAddrPort(front)}.Append(nil)
	xff := func(c *http.Client) (string, error) {
		resp, err := c.Get("https://x.wild.test:8443/xff")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = &statusError{resp.StatusCode}
		}
		return string(b), err
	}

	// The trusted balancer's header: the proxied address is the client,
	// on HTTP/1.1 and HTTP/2.
	for _, h2 := range []bool{false, true} {
		got, err := xff(proxiedTLSClient(t, env, trusted, front, header, roots, h2))
		if err != nil || got != proxiedClient.Addr().String() {
			t.Errorf("proxied request (h2 %v): X-Forwarded-For at caddy %q, %v; want %s", h2, got, err, proxiedClient.Addr())
		}
	}
	for _, l := range waitLines(t, logFile, 2) {
		if l["client"] != proxiedClient.String() || l["frontend"] != "https" || l["path"] != "/xff" {
			t.Errorf("access log client %v frontend %v path %v, want %s https /xff", l["client"], l["frontend"], l["path"], proxiedClient)
		}
	}

	// HAProxy as the balancer in TCP mode, sending the header before the
	// TLS stream it passes: curl's address behind it reaches caddy.
	startProxyV2Balancer(t, env, "127.0.0.1:9443", front, trusted)
	curlTLS := func(args ...string) (string, error) {
		all := append([]string{"-sS", "-m", "5", "--cacert", cert.cert}, args...)
		return runIn(t, env.StartClient, 20*time.Second, "curl", all...)
	}
	for _, v := range []string{"--http1.1", "--http2"} {
		var out string
		var err error
		if !testutil.Eventually(func() bool {
			out, err = curlTLS(v, "--resolve", "x.wild.test:9443:127.0.0.1", "https://x.wild.test:9443/xff")
			return err == nil
		}) || out != "127.0.0.1" {
			t.Errorf("curl %s through haproxy: %q, %v; want caddy to see X-Forwarded-For 127.0.0.1", v, out, err)
		}
	}

	// From the trusted source without a header (curl over HTTPS), or with
	// a version 1 (text) one: closed.
	for _, v1 := range []bool{false, true} {
		args := []string{"--interface", trusted.String(), "--resolve", "x.wild.test:8443:198.18.1.1", "https://x.wild.test:8443/xff"}
		if v1 {
			args = append(args, "--haproxy-protocol")
		}
		if out, err := curlTLS(args...); err == nil {
			t.Errorf("curl over HTTPS from the trusted source (PROXY v1 %v) was served: %q", v1, out)
		}
	}
	// A malformed header (version 1 in the version nibble): closed before
	// any handshake.
	bad := append([]byte(nil), header...)
	bad[12] = 0x11
	if got, err := xff(proxiedTLSClient(t, env, trusted, front, bad, roots, false)); err == nil {
		t.Errorf("malformed header: served, X-Forwarded-For %q", got)
	}

	// From another source a header is never trusted: its bytes come
	// where the ClientHello should, and the handshake fails.
	if got, err := xff(proxiedTLSClient(t, env, untrusted, front, header, roots, false)); err == nil {
		t.Errorf("untrusted header honoured: X-Forwarded-For %q", got)
	}
	// ... and curl over HTTPS from there is served with its own address.
	out, err := curlTLS("--interface", untrusted.String(), "--resolve", "x.wild.test:8443:198.18.1.1", "https://x.wild.test:8443/xff")
	if err != nil || out != untrusted.String() {
		t.Errorf("curl over HTTPS from %s: %q, %v; want its own address in X-Forwarded-For", untrusted, out, err)
	}

	// 2 from the test's sender, 2 from HAProxy (its connections to the
	// engine are only made for curl's); no header twice; one malformed;
	// the untrusted sender and curl.
	text := metricsText(t, env)
	for result, want := range map[string]float64{"proxied": 4, "missing": 2, "malformed": 1, "untrusted": 2} {
		if got, _ := metricSum(text, regexp.MustCompile(`^xdpnet_proxy_protocol_total$`), `frontend="https"`, `result="`+result+`"`); got != want {
			t.Errorf("xdpnet_proxy_protocol_total{frontend=\"https\",result=%q} = %v, want %v", result, got, want)
		}
	}
}
