package engine_test

// The https frontend (issue 21, items 1 and 2) against real clients in the
// lab: curl over HTTP/1.1 and HTTP/2, h2load and nghttp over TLS, SNI with
// two certificates, session resumption (Go's TLS client), certificates
// reloaded under load (wrk) and Alt-Svc advertising the h3 frontend.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// The https frontend and the h3 frontend share 198.18.1.1:8443 (TCP and
// UDP): the https one advertises the h3 one, which has no certificate
// files of its own and serves the https one's. The http frontend on 8080
// advertises the h3 one with max_age 1h.
const (
	httpsAddr   = "198.18.1.1:8443"
	httpsAltSvc = `h3=":8443"; ma=86400`
	httpAltSvc  = `h3=":8443"; ma=3600`
)

// labCertFiles is a certificate the test wrote: its files and its leaf.
type labCertFiles struct {
	cert, key string
	leaf      *x509.Certificate
}

// writeLabCert writes a self-signed certificate for hosts to dir.
func writeLabCert(t *testing.T, dir string, hosts ...string) labCertFiles {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c, k, err := quicmux.WriteSelfSigned(dir, hosts, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return labCertFiles{cert: c, key: k, leaf: pair.Leaf}
}

// httpsLab is an engine with an https frontend holding two certificates:
// a.example (the default, also valid for the frontend's IP) and
// *.b.example.
type httpsLab struct {
	env     *enginelab.Env
	file    string // the configuration file (what SIGHUP reads again)
	a, b    labCertFiles
	bundle  string // both certificates, for curl --cacert
	pool    *x509.CertPool
	resolve []string // curl --resolve for the test's names
}

// startHTTPSLab starts it on stack; extra is more keys of the https
// frontend (YAML lines indented four spaces).
func startHTTPSLab(t *testing.T, stack, extra string) *httpsLab {
	t.Helper()
	dir := t.TempDir()
	h := &httpsLab{
		a: writeLabCert(t, filepath.Join(dir, "a"), "a.example", "198.18.1.1"),
		b: writeLabCert(t, filepath.Join(dir, "b"), "*.b.example"),
	}
	var bundle []byte
	h.pool = x509.NewCertPool()
	for _, c := range []labCertFiles{h.a, h.b} {
		pem, err := os.ReadFile(c.cert)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, pem...)
		h.pool.AddCert(c.leaf)
	}
	h.bundle = filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(h.bundle, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a.example", "x.b.example", "other.example"} {
		h.resolve = append(h.resolve, "--resolve", n+":8443:198.18.1.1")
	}
	text := fmt.Sprintf(`dataplane: xdp
admin: 127.0.0.1:0
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - name: https
    listen: %q
    protocol: https
    backend: origins
    tls:
      cert: %s
      key: %s
      certificates: [{cert: %s, key: %s}]
%s  - name: h3
    listen: %q
    protocol: h3
    backend: origins
  - {name: http, listen: "198.18.1.1:8080", protocol: http, backend: origins, alt_svc: {h3: h3, max_age: 1h}}
backends:
  - name: origins
    protocol: h3
    health_check: {interval: 500ms, timeout: 400ms}
    servers:
      - {name: origin-a, address: "198.18.2.10:4433"}
`, httpsAddr, h.a.cert, h.a.key, h.b.cert, h.b.key, extra, httpsAddr)
	h.file = filepath.Join(dir, "xdpnet.yaml")
	if err := os.WriteFile(h.file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	h.env = startLab(t, stack, enginelab.Options{Config: text})
	return h
}

// curl runs curl in the client namespace, trusting both certificates and
// resolving the test's names to the frontend.
func (h *httpsLab) curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	all := append([]string{"-sS", "-m", "10", "--cacert", h.bundle}, h.resolve...)
	return runIn(t, h.env.StartClient, 30*time.Second, "curl", append(all, args...)...)
}

// reload does what SIGHUP does in xdpnet run: read the configuration file
// again and apply it (the lab's data plane and admin address kept).
func (h *httpsLab) reload() error {
	next, err := config.Load(h.file)
	if err != nil {
		return err
	}
	next.Dataplane, next.Admin = h.env.Config.Dataplane, h.env.Config.Admin
	return h.env.Engine.Reload(next)
}

// tlsClient is a net/http client in the client namespace for serverName
// over TLS (maxVersion 0: TLS 1.3), one new connection per request, with a
// session cache when resume (a resumed session sends no certificate).
func (h *httpsLab) tlsClient(serverName string, maxVersion uint16, resume bool, pool *x509.CertPool) *http.Client {
	var cache tls.ClientSessionCache
	if resume {
		cache = tls.NewLRUClientSessionCache(16)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return h.env.Dial(ctx, network, httpsAddr)
		},
		TLSClientConfig: &tls.Config{
			ServerName: serverName, RootCAs: pool, MaxVersion: maxVersion,
			ClientSessionCache: cache,
		},
		DisableKeepAlives: true,
		ForceAttemptHTTP2: true,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// tlsGet GETs path and returns the response's TLS state.
func tlsGet(c *http.Client, serverName, path string) (*tls.ConnectionState, *http.Response, error) {
	resp, err := c.Get("https://" + strings.Replace(httpsAddr, "198.18.1.1", serverName, 1) + path)
	if err != nil {
		return nil, nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = &statusError{resp.StatusCode}
	}
	return resp.TLS, resp, err
}

// h3Leaf is the certificate the h3 frontend serves for SNI sni ("" for
// none), seen by quic-go's HTTP/3 client from the client namespace.
func (h *httpsLab) h3Leaf(t *testing.T, sni string) *x509.Certificate {
	t.Helper()
	pc, err := h.env.ListenPacket()
	if err != nil {
		t.Fatal(err)
	}
	qtr := &quic.Transport{Conn: pc}
	h3 := &http3.Transport{
		TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return qtr.Dial(ctx, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(httpsAddr)), tlsCfg, cfg)
		},
	}
	defer func() { h3.Close(); qtr.Close(); pc.Close() }()
	st, _, err := tlsGet(&http.Client{Transport: h3, Timeout: 10 * time.Second}, "198.18.1.1", "/")
	if err != nil {
		t.Fatalf("h3 GET: %v", err)
	}
	return st.PeerCertificates[0]
}

// curl and nghttp over HTTP/1.1 and HTTP/2 with TLS, h2load over TLS, and
// Alt-Svc on the https and http frontends, on both data planes.
func TestLabHTTPS(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			h := startHTTPSLab(t, stack, "")
			url := "https://a.example:8443"
			for _, v := range []struct{ flag, want string }{{"--http1.1", "1.1"}, {"--http2", "2"}} {
				out, err := h.curl(t, v.flag, "-D", "-", "-o", "/dev/null", "-w", "%{http_version} %{http_code} %{size_download}", url+"/bytes/100000")
				if err != nil || !strings.HasSuffix(out, v.want+" 200 100000") {
					t.Errorf("curl %s: %v\n%s", v.flag, err, out)
				}
				if !strings.Contains(strings.ToLower(out), "alt-svc: "+httpsAltSvc+"\r\n") {
					t.Errorf("curl %s: no Alt-Svc %s in\n%s", v.flag, httpsAltSvc, out)
				}
				out, err = h.curl(t, v.flag, "--data-binary", "ping-over-tls", url+"/echo")
				if err != nil || out != "ping-over-tls" {
					t.Errorf("curl %s POST /echo: %q, %v", v.flag, out, err)
				}
			}
			out, err := runIn(t, h.env.StartClient, 30*time.Second, "curl", "-sS", "-m", "10", "-D", "-", "-o", "/dev/null",
				h.env.FrontendURL("http")+"/")
			if err != nil || !strings.Contains(strings.ToLower(out), "alt-svc: "+httpAltSvc+"\r\n") {
				t.Errorf("http frontend: no Alt-Svc %s: %v\n%s", httpAltSvc, err, out)
			}

			out, err = runIn(t, h.env.StartClient, 30*time.Second, "nghttp", "-nv", "-t", "10", "https://"+httpsAddr+"/bytes/5000")
			if err != nil || !strings.Contains(out, ":status: 200") || !strings.Contains(out, "alt-svc: "+httpsAltSvc) ||
				!strings.Contains(out, "The negotiated protocol: h2") {
				t.Errorf("nghttp: %v\n%s", err, out)
			}

			out, err = runIn(t, h.env.StartClient, 60*time.Second, "h2load", "-n", "400", "-c", "4", "-m", "8", "-t", "1",
				"-T", "10", "https://"+httpsAddr+"/bytes/512")
			if err != nil {
				t.Fatalf("h2load: %v\n%s", err, out)
			}
			if !strings.Contains(out, "400 succeeded, 0 failed, 0 errored") || !strings.Contains(out, "Application protocol: h2") ||
				!strings.Contains(out, "TLS Protocol: TLSv1.3") {
				t.Fatalf("h2load did not succeed over TLS with h2:\n%s", out)
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "finished in") || strings.HasPrefix(l, "requests:") {
					t.Log(l)
				}
			}
		})
	}
}

// The certificate is chosen by SNI: exact name, wildcard, and the default
// for an unknown name or none; the h3 frontend chooses the same way.
func TestLabHTTPSSNI(t *testing.T) {
	h := startHTTPSLab(t, "xdp", "")
	for _, tc := range []struct {
		name, host string
		want       labCertFiles
		insecure   bool
	}{
		{"exact", "a.example", h.a, false},
		{"wildcard", "x.b.example", h.b, false},
		{"unknown name gets the default", "other.example", h.a, true},
		{"no SNI gets the default", "198.18.1.1", h.a, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-o", "/dev/null", "-w", "%{certs}"}
			if tc.insecure {
				args = append(args, "-k") // the default does not name other.example
			}
			out, err := h.curl(t, append(args, "https://"+tc.host+":8443/")...)
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			// curl's %{certs} prints the chain's subject and SANs.
			subject := "Subject:O = xdpnet lab, CN = " + tc.want.leaf.Subject.CommonName
			san := "DNS:" + tc.want.leaf.DNSNames[0]
			if !strings.Contains(out, subject) || !strings.Contains(out, san) {
				t.Errorf("curl %s: want %q and %q in the served certificate:\n%s", tc.host, subject, san, out)
			}

			// HTTP/3: the same choice.
			sni := tc.host
			if tc.host == "198.18.1.1" {
				sni = ""
			}
			if got := h.h3Leaf(t, sni); !got.Equal(tc.want.leaf) {
				t.Errorf("h3 SNI %q: served %v, want %v", sni, got.DNSNames, tc.want.leaf.DNSNames)
			}
		})
	}
}

// TLS session tickets resume a second connection, on TLS 1.3 and 1.2.
func TestLabHTTPSResumption(t *testing.T) {
	h := startHTTPSLab(t, "xdp", "")
	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}} {
		t.Run(v.name, func(t *testing.T) {
			c := h.tlsClient("a.example", v.max, true, h.pool)
			for i, wantResumed := range []bool{false, true, true} {
				st, _, err := tlsGet(c, "a.example", "/bytes/10")
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if st.Version != v.max {
					t.Errorf("request %d: version %x, want %x", i, st.Version, v.max)
				}
				if st.DidResume != wantResumed {
					t.Errorf("request %d: DidResume %v, want %v", i, st.DidResume, wantResumed)
				}
			}
		})
	}
	// The engine counts them the same way: one full and two resumed
	// handshakes per version.
	h.waitHandshakes(t, "full", 2)
	h.waitHandshakes(t, "resumed", 4)
	h.waitHandshakes(t, "failed", 0)
}

// Certificate files replaced and reloaded under load (wrk over kept-alive
// TLS connections, and a client making a new connection per request): no
// request fails, established connections stay, new handshakes get the new
// certificate. A reload with a broken file is refused, naming the file,
// and the running certificate stays.
func TestLabHTTPSCertReload(t *testing.T) {
	h := startHTTPSLab(t, "xdp", "")
	// The next certificate for a.example, written aside and trusted.
	next := writeLabCert(t, filepath.Join(t.TempDir(), "next"), "a.example", "198.18.1.1")
	pool := h.pool.Clone()
	pool.AddCert(next.leaf)

	load := startWrk(t, h.env, 4, 4*time.Second, "https://"+httpsAddr+"/bytes/512")
	// New connections, one per request, while the load runs.
	var (
		served  sync.Map // serial of each certificate served -> true
		newOK   atomic.Int64
		failed  atomic.Int64
		firstMu sync.Mutex
		first   error
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		c := h.tlsClient("a.example", 0, false, pool)
		for {
			select {
			case <-stop:
				return
			default:
			}
			st, _, err := tlsGet(c, "a.example", "/bytes/512")
			if err != nil {
				failed.Add(1)
				firstMu.Lock()
				if first == nil {
					first = err
				}
				firstMu.Unlock()
				continue
			}
			served.Store(st.PeerCertificates[0].SerialNumber.String(), true)
			newOK.Add(1)
		}
	})
	stopClient := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopClient()
	waitRequests(t, h.env, 50, load)

	copyFile(t, next.cert, h.a.cert)
	copyFile(t, next.key, h.a.key)
	if err := h.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	wrkRan := !load.exited() // else only the new-connection client was the load
	testutil.WaitFor(t, "a new connection served the new certificate", func() bool {
		_, ok := served.Load(next.leaf.SerialNumber.String())
		return ok
	})

	if got := h.h3Leaf(t, "a.example"); !got.Equal(next.leaf) {
		t.Errorf("h3 after the reload: serial %v, want the new certificate's %v", got.SerialNumber, next.leaf.SerialNumber)
	}

	// A broken certificate file: the reload is refused, naming it.
	if err := os.WriteFile(h.a.cert, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := h.reload()
	if err == nil || !strings.Contains(err.Error(), h.a.cert) {
		t.Fatalf("reload with a broken certificate: %v, want an error naming %s", err, h.a.cert)
	}
	before := newOK.Load()
	testutil.WaitFor(t, "more requests after the refused reload", func() bool { return newOK.Load() > before+10 })

	out, err := load.wait(t, 30*time.Second)
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	figs, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	stopClient()
	if figs.failed() > 0 || figs.Requests == 0 {
		t.Errorf("wrk across the reloads: %v\n%s", figs, out)
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d new-connection requests failed across the reloads; first: %v", n, n+newOK.Load(), first)
	}
	// After the refused reload, new handshakes still get the reloaded
	// certificate (never the old one, never none).
	st, _, err := tlsGet(h.tlsClient("a.example", 0, false, pool), "a.example", "/")
	if err != nil || !st.PeerCertificates[0].Equal(next.leaf) {
		t.Errorf("after the refused reload: %v", err)
	}
	t.Logf("wrk %v (still running at the reload: %v); %d requests on new connections, certificates served: %d",
		figs, wrkRan, newOK.Load(), countMap(&served))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func countMap(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// The https frontend's limits are the http frontend's: max_connections
// closes a connection over it right after accept (counted), and
// timeouts.header bounds the TLS handshake of a client that sends nothing.
func TestLabHTTPSLimits(t *testing.T) {
	h := startHTTPSLab(t, "xdp", "    max_connections: 2\n    timeouts: {header: 3s, idle: 1m}\n")
	idle := openIdle(t, h.env, httpsAddr, 3)
	// One is over the limit at once; the two admitted ones never start
	// their handshake and are cut at timeouts.header (idle is a minute).
	if refused, cut, held := idle.waitRefused(3, 20*time.Second); refused != 0 || cut != 3 {
		t.Errorf("3 silent connections, limit 2: refused at SYN %d, cut %d, still held %d; want all 3 cut", refused, cut, held)
	}
	n, series := metricSum(metricsText(t, h.env), regexp.MustCompile(`^xdpnet_connections_refused_total$`), `frontend="https"`, `reason="frontend_limit"`)
	if n != 1 {
		t.Errorf("refused connections counted %v (%v), want 1", n, series)
	}
	// Their slots are free again.
	if out, err := h.curl(t, "-o", "/dev/null", "-w", "%{http_code}", "https://a.example:8443/"); err != nil || out != "200" {
		t.Errorf("curl after the silent connections: %q, %v", out, err)
	}
	// The two cut mid-handshake are counted as failed handshakes (the
	// refused one never reached TLS), curl's as a full one.
	h.waitHandshakes(t, "failed", 2)
	h.waitHandshakes(t, "full", 1)
	// Every connection, cut mid-handshake or served, gave back its
	// reservation of TCP buffers in the memory budget.
	testutil.WaitFor(t, "every TCP buffer reservation back", func() bool {
		return h.env.Engine.Stats().Engine.TCP.ReservedBytes == 0
	})
}

// waitHandshakes waits until xdpnet_tls_handshakes_total of the https
// frontend for result is n (connections are counted as they close), and
// fails t if it is not, or goes past.
func (h *httpsLab) waitHandshakes(t *testing.T, result string, n float64) {
	t.Helper()
	re := regexp.MustCompile(`^xdpnet_tls_handshakes_total$`)
	var got float64
	testutil.Eventually(func() bool {
		got, _ = metricSum(metricsText(t, h.env), re, `frontend="https"`, `result="`+result+`"`)
		return got >= n
	})
	if got != n {
		t.Errorf("xdpnet_tls_handshakes_total{result=%q} = %v, want %v", result, got, n)
	}
}
