package engine_test

// Backends over TCP (issue 22): the engine on the xdp data plane in front of
// nginx, h2o and HAProxy reached over h2, h2c, http1 and http1-tls, with
// clients (net/http over HTTP/1.1 and h2c, wrk, h2load) in the client
// namespace.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// defaultChecks turns the fault suite's configuration into one with the
// engine's default health checks (every 2s, 1s timeout) and a request
// timeout of 2 minutes: the suite's 400ms checks took nginx out while a
// 50 MiB transfer under -race starved the machine (and the server's
// connections, the transfer's with them, were closed), and its 10s request
// timeout, which covers the upload of the request body, cut a 50 MiB PUT.
var defaultChecks = []string{
	"health_check: {interval: 500ms, timeout: 400ms, path: /healthz, rise: 2, fall: 2}", "health_check: {path: /healthz}",
	"request: 10s", "request: 2m",
}

// tcpLab starts k behind the engine's http frontend, with the default
// reuse settings (max_idle 64 on HTTP/1.1 backends, 4 on HTTP/2 ones) and
// defaultChecks.
func tcpLab(t *testing.T, k originKind, backend string) *faultLab {
	t.Helper()
	f := startFaultLab(t, faultOpts{kinds: []originKind{k}, backend: backend, edit: defaultChecks})
	if _, ok := waitServing(f.env, f.url(), time.Now(), recoverWithin); !ok {
		t.Fatalf("the engine did not serve %s over %s", k.name, k.proto)
	}
	return f
}

// randomFile writes n random bytes as name in the origin's document root
// and returns them.
func randomFile(t *testing.T, f *faultLab, name string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(f.files.dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// exchange sends method url with body through c and returns the status and
// response body.
func exchange(t *testing.T, c *http.Client, method, url string, body []byte) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp.StatusCode, got
}

// sameBody fails t unless got is want (compared by length and SHA-256, so
// that a failure does not print megabytes).
func sameBody(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) || sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: got %d bytes (sha256 %x), want %d (sha256 %x)", what, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

// TestTCPBackendBodies: response bodies from 0 B to 50 MiB, and request
// bodies up (read back from nginx's DAV store, echoed by h2o), come through
// whole over every backend protocol, from HTTP/1.1 and h2c clients.
func TestTCPBackendBodies(t *testing.T) {
	cases := []struct {
		k originKind
		// up: how an upload is checked ("put": nginx stores it, "echo":
		// h2o returns it); big: the 50 MiB run.
		up  string
		big bool
	}{
		{nginxH2, "put", true},
		{nginxHTTP1, "put", false},
		{nginxHTTP1TLS, "put", false},
		{h2oH2C, "echo", true},
		{h2oH2, "echo", false},
	}
	for _, c := range cases {
		t.Run(c.k.name+"/"+c.k.proto, func(t *testing.T) {
			f := tcpLab(t, c.k, "")
			base := f.env.FrontendURL("http")
			sizes := []int{0, 1, 1000, 64<<10 + 1, 1 << 20}
			if c.big {
				sizes = append(sizes, 50<<20)
			}
			for _, h2c := range []bool{false, true} {
				cl := f.env.HTTPClient(4, h2c)
				cl.Timeout = 2 * time.Minute
				for _, n := range sizes {
					if h2c && n == 50<<20 {
						continue // once is enough on this machine
					}
					name := fmt.Sprintf("f%d-%v", n, h2c)
					want := randomFile(t, f, name, n)
					code, got := exchange(t, cl, http.MethodGet, base+"/"+name, nil)
					if code != http.StatusOK {
						t.Fatalf("GET %d B (h2c client %v): status %d", n, h2c, code)
					}
					sameBody(t, fmt.Sprintf("GET %d B (h2c client %v)", n, h2c), got, want)

					up := make([]byte, n)
					rand.Read(up)
					switch c.up {
					case "put":
						url := base + "/up/" + name
						if code, b := exchange(t, cl, http.MethodPut, url, up); code != http.StatusCreated && code != http.StatusNoContent {
							t.Fatalf("PUT %d B (h2c client %v): status %d: %.200s", n, h2c, code, b)
						}
						code, got = exchange(t, cl, http.MethodGet, url, nil)
					case "echo":
						code, got = exchange(t, cl, http.MethodPost, base+"/echo", up)
					}
					if code != http.StatusOK {
						t.Fatalf("upload %d B read back (h2c client %v): status %d", n, h2c, code)
					}
					sameBody(t, fmt.Sprintf("upload %d B (h2c client %v)", n, h2c), got, up)
				}
				cl.CloseIdleConnections()
			}
		})
	}
}

// TestTCPBackendReuse: under wrk (16 HTTP/1.1 clients, stopped with SIGINT
// once the engine served 5,000 requests) and h2load (4 h2c clients of 16
// streams, 5,000 requests; 20,000 on HTTP/1.1) at most 0.5% of the requests
// open a backend connection, on every backend protocol, nginx, h2o and
// HAProxy behind it; nothing fails. HTTP/1.1 backends need a connection per
// request in flight (64 under h2load), and under the safe policy one per
// client connection's first request (16 under wrk), hence the counts.
func TestTCPBackendReuse(t *testing.T) {
	for _, k := range []originKind{nginxH2, nginxHTTP1, h2oH2C, h2oH2, haproxyHTTP1, haproxyH2} {
		t.Run(k.name+"/"+k.proto, func(t *testing.T) {
			needTool(t, "wrk")
			needTool(t, "h2load")
			f := tcpLab(t, k, "")
			url := f.url()

			before := f.env.Engine.Stats()
			wrk := startWrk(t, f.env, 16, time.Minute, url)
			deadline := time.Now().Add(time.Minute)
			for f.env.Engine.Stats().Requests < before.Requests+5000 && time.Now().Before(deadline) && !wrk.exited() {
				time.Sleep(20 * time.Millisecond)
			}
			wrk.signal(t, syscall.SIGINT) // wrk prints its summary
			out, _ := wrk.wait(t, 30*time.Second)
			fig, err := parseWrk(out)
			if err != nil {
				t.Fatal(err)
			}
			mid := f.env.Engine.Stats()
			n := "5000"
			if k.proto == "http1" {
				n = "20000"
			}
			h2 := startProc(t, f.env.Lab.Client, nil, "h2load", "-n", n, "-c", "4", "-m", "16", "-T", "5", url)
			h2out, _ := h2.wait(t, 3*time.Minute)
			hfig, total, _, err := parseH2load(h2out)
			if err != nil {
				t.Fatal(err)
			}
			st := f.env.Engine.Stats()
			for _, r := range []struct {
				tool         string
				fig          loadFigures
				opened, reqs float64
			}{
				{"wrk -c16", fig, mid.BackendConnsOpened - before.BackendConnsOpened, mid.BackendRequests - before.BackendRequests},
				{"h2load -c4 -m16 -n" + n, hfig, st.BackendConnsOpened - mid.BackendConnsOpened, st.BackendRequests - mid.BackendRequests},
			} {
				ratio := 1 - r.opened/r.reqs
				t.Logf("FIGURES reuse origin=%s proto=%s tool=%q %v backend_requests=%v conns_opened=%v reuse_ratio=%.4f",
					k.name, k.proto, r.tool, r.fig, r.reqs, r.opened, ratio)
				if r.fig.failed() > 0 || r.reqs == 0 {
					t.Errorf("%s: %v", r.tool, r.fig)
				}
				if ratio < 0.995 {
					t.Errorf("%s: reuse ratio %.4f (%v connections for %v requests), want at least 0.995", r.tool, ratio, r.opened, r.reqs)
				}
			}
			if hfig.Requests != total {
				t.Errorf("h2load: %d of %d requests done", hfig.Requests, total)
			}
		})
	}
}

// TestTCPBackendGoAway: nginx ends each connection after 100 requests
// (GOAWAY on HTTP/2, RFC 9113 section 6.8; Connection: close on HTTP/1.1)
// while h2load sends 3,000 GETs, 32 at a time; none fails: requests the
// server did not process are retried on another connection, and a
// connection that will close is not handed out again. (That an unprocessed
// request is retried whatever its method is httpmux's TestGoAwayRejected.)
// The limit is above the concurrency, as real ones are (nginx's default is
// 1000): a request rejected from one connection then lands among the first
// of the next. Below it, a request can be rejected more times in a row
// than the backend's retries allow.
func TestTCPBackendGoAway(t *testing.T) {
	needTool(t, "h2load")
	const n, perConn = 3000, 100
	for _, proto := range []string{"h2", "http1"} {
		t.Run(proto, func(t *testing.T) {
			k := originKind{name: "nginx", command: nginxCommand(proto, perConn), proto: proto}
			f := tcpLab(t, k, "")
			h2 := startProc(t, f.env.Lab.Client, nil, "h2load", "-n", strconv.Itoa(n), "-c", "4", "-m", "8", "-T", "5", f.url())
			out, _ := h2.wait(t, 2*time.Minute)
			fig, total, _, err := parseH2load(out)
			if err != nil {
				t.Fatal(err)
			}
			st := f.env.Engine.Stats()
			t.Logf("FIGURES goaway proto=%s h2load: %v; backend conns opened %v for %v backend requests, retries %v",
				proto, fig, st.BackendConnsOpened, st.BackendRequests, st.Retries)
			if fig.failed() > 0 || fig.Requests != total {
				t.Errorf("h2load: %v (%d asked)", fig, total)
			}
			if st.BackendConnsOpened < n/perConn {
				t.Errorf("%v connections for %d requests at %d per connection: nginx did not end them", st.BackendConnsOpened, n, perConn)
			}
		})
	}
}

// frontendClient is a client of one kind (name) of the engine's HTTP
// frontends, at base, speaking HTTP/major.
type frontendClient struct {
	name  string
	c     *http.Client
	base  string
	major int
}

// allFrontendsLab starts k behind the engine's http frontend (HTTP/1.1 and
// h2c clients), an h3 one at :8443 and an https one at :8444 (h2 and
// HTTP/1.1 clients), with tcpLab's settings and fe as more fields of each
// frontend (", key: value"), and returns a client of each kind.
func allFrontendsLab(t *testing.T, k originKind, fe string) (*faultLab, []frontendClient) {
	t.Helper()
	cert := writeLabCert(t, t.TempDir(), "198.18.1.1")
	more := fmt.Sprintf("  - {name: h3, listen: \"198.18.1.1:8443\", protocol: h3, backend: origins%s}\n"+
		"  - {name: https, listen: \"198.18.1.1:8444\", protocol: https, backend: origins, tls: {cert: %q, key: %q}%s}\n", fe, cert.cert, cert.key, fe)
	f := startFaultLab(t, faultOpts{kinds: []originKind{k}, frontend: fe, moreFrontends: more, edit: defaultChecks})
	if _, ok := waitServing(f.env, f.url(), time.Now(), recoverWithin); !ok {
		t.Fatal("the engine did not serve")
	}
	h3c, closeH3, err := f.env.HTTP3Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeH3)
	httpsClient := func(h2 bool) *http.Client {
		var p http.Protocols
		p.SetHTTP1(!h2)
		p.SetHTTP2(h2)
		tr := &http.Transport{DialContext: f.env.Dial, Protocols: &p, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	return f, []frontendClient{
		{"http1", f.env.HTTPClient(1, false), f.env.FrontendURL("http"), 1},
		{"h2c", f.env.HTTPClient(1, true), f.env.FrontendURL("http"), 2},
		{"https-h2", httpsClient(true), f.env.FrontendURL("https"), 2},
		{"https-http1", httpsClient(false), f.env.FrontendURL("https"), 1},
		{"h3", h3c, f.env.FrontendURL("h3"), 3},
	}
}

// TestTCPBackendFrontends: every HTTP frontend (HTTP/1.1 and h2c on http,
// h2 and HTTP/1.1 on https, HTTP/3) reaches backends over h2, h2c and http1,
// with a response body and a request body through each.
func TestTCPBackendFrontends(t *testing.T) {
	for _, c := range []struct {
		k  originKind
		up string // how an upload comes back: nginx stores, h2o echoes
	}{{nginxH2, "put"}, {h2oH2C, "echo"}, {nginxHTTP1, "put"}} {
		t.Run(c.k.name+"/"+c.k.proto, func(t *testing.T) {
			f, clients := allFrontendsLab(t, c.k, "")
			want := randomFile(t, f, "page", 300<<10)
			for _, fe := range clients {
				base := fe.base
				code, got := exchange(t, fe.c, http.MethodGet, base+"/page", nil)
				if code != http.StatusOK {
					t.Fatalf("%s: GET status %d", fe.name, code)
				}
				sameBody(t, fe.name+" GET", got, want)
				up := make([]byte, 200<<10)
				rand.Read(up)
				switch c.up {
				case "put":
					url := base + "/up/" + fe.name
					if code, b := exchange(t, fe.c, http.MethodPut, url, up); code != http.StatusCreated && code != http.StatusNoContent {
						t.Fatalf("%s: PUT status %d: %.200s", fe.name, code, b)
					}
					code, got = exchange(t, fe.c, http.MethodGet, url, nil)
				case "echo":
					code, got = exchange(t, fe.c, http.MethodPost, base+"/echo", up)
				}
				if code != http.StatusOK {
					t.Fatalf("%s: upload read back: status %d", fe.name, code)
				}
				sameBody(t, fe.name+" upload", got, up)
			}
		})
	}
}

// lengthless hides a body's length from net/http, which then sends it
// chunked (HTTP/1.1) or without content-length (HTTP/2).
type lengthless struct{ r io.Reader }

func (l lengthless) Read(p []byte) (int, error) { return l.r.Read(p) }

// TestTCPBackendHTTPSemantics: over h2c and h2 (h2o), a request body without
// length, sent after 100-continue, comes back whole; a response without
// length streams through; a 6 KB request header reaches the server and
// comes back as a response header. Over http1 (nginx) a body without
// length is stored whole.
func TestTCPBackendHTTPSemantics(t *testing.T) {
	for _, k := range []originKind{h2oH2C, h2oH2} {
		t.Run(k.name+"/"+k.proto, func(t *testing.T) {
			f := tcpLab(t, k, "")
			base := f.env.FrontendURL("http")
			for _, h2c := range []bool{false, true} {
				cl := f.env.HTTPClient(1, h2c)
				cl.Transport.(*http.Transport).ExpectContinueTimeout = 5 * time.Second
				up := make([]byte, 3<<20)
				rand.Read(up)
				req, err := http.NewRequest(http.MethodPost, base+"/echo", lengthless{bytes.NewReader(up)})
				if err != nil {
					t.Fatal(err)
				}
				big := strings.Repeat("b", 6000)
				req.Header.Set("X-Big", big)
				req.Header.Set("Expect", "100-continue")
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatalf("h2c client %v: POST without length: %v", h2c, err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("h2c client %v: POST without length: status %d, %v", h2c, resp.StatusCode, err)
				}
				sameBody(t, fmt.Sprintf("echo without length (h2c client %v)", h2c), got, up)
				if resp.Header.Get("X-Big-Echo") != big {
					t.Fatalf("h2c client %v: the 6 KB header came back as %d bytes", h2c, len(resp.Header.Get("X-Big-Echo")))
				}

				resp, err = cl.Get(base + "/chunks")
				if err != nil {
					t.Fatal(err)
				}
				got, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength != -1 ||
					!bytes.HasPrefix(got, []byte("chunk 0 ")) || !bytes.Contains(got, []byte("chunk 63 ")) || len(got) != 64*1000+64*len("chunk 0 \n")+54 {
					t.Fatalf("h2c client %v: streamed response: status %d, length %d, %d bytes, %v", h2c, resp.StatusCode, resp.ContentLength, len(got), err)
				}
				cl.CloseIdleConnections()
			}
		})
	}
	// HTTP/1.1 backend: the body without length goes chunked to nginx,
	// which stores it (PUT) for the GET that reads it back.
	t.Run("nginx/http1", func(t *testing.T) {
		f := tcpLab(t, nginxHTTP1, "")
		cl := f.env.HTTPClient(1, true)
		cl.Transport.(*http.Transport).ExpectContinueTimeout = 5 * time.Second
		up := make([]byte, 3<<20)
		rand.Read(up)
		url := f.env.FrontendURL("http") + "/up/chunked"
		req, err := http.NewRequest(http.MethodPut, url, lengthless{bytes.NewReader(up)})
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Expect", "100-continue")
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT without length: status %d", resp.StatusCode)
		}
		code, got := exchange(t, cl, http.MethodGet, url, nil)
		if code != http.StatusOK {
			t.Fatalf("GET after PUT: status %d", code)
		}
		sameBody(t, "PUT without length read back", got, up)
	})
}

// TestTCPBackendResumption: over TLS (nginx: h2 and http1-tls), each new
// backend connection after the first resumes a session from the server's
// ticket cache (RFC 8446 section 2.2), and is counted.
func TestTCPBackendResumption(t *testing.T) {
	for _, k := range []originKind{nginxH2, nginxHTTP1TLS} {
		t.Run(k.name+"/"+k.proto, func(t *testing.T) {
			// policy never: each client connection gets its own backend
			// connection, so each request below dials one.
			f := tcpLab(t, k, "    reuse: {policy: never}\n")
			cl := f.env.HTTPClient(1, false)
			cl.Transport.(*http.Transport).DisableKeepAlives = true
			server := func() uint64 {
				return f.env.Engine.Stats().Engine.Backends["origins"].Servers["s0"].ResumedHandshakes
			}
			before, opened := server(), f.env.Engine.Stats().BackendConnsOpened
			const n = 5
			for range n {
				if code, _ := exchange(t, cl, http.MethodGet, f.url(), nil); code != http.StatusOK {
					t.Fatalf("status %d", code)
				}
			}
			dials := f.env.Engine.Stats().BackendConnsOpened - opened
			resumed := server() - before
			t.Logf("FIGURES resumption origin=%s proto=%s requests=%d dials=%v resumed=%d", k.name, k.proto, n, dials, resumed)
			if dials < n || resumed < n-1 {
				t.Fatalf("%v dials for %d requests, %d resumed; want every dial after the first resumed", dials, n, resumed)
			}
		})
	}
}

// TestTCPBackendHTTP1Policy: HAProxy's http-reuse semantics on an HTTP/1.1
// backend (nginx), three client connections one after the other, two
// requests each, with idle backend connections already in the pool (left by
// tcpLab's readiness probes). Under safe a client connection's first POST
// never takes an idle backend connection (the server may be closing it, and
// the request could not be retried), its second reuses the first's; a first
// GET may, because the engine sends it again on a fresh connection if the
// idle one dies under it (RFC 9110 section 9.2.2). Under aggressive the
// first takes one that already served a request; under never nothing is
// shared between client connections.
func TestTCPBackendHTTP1Policy(t *testing.T) {
	for _, c := range []struct {
		policy, method string
		dials          float64 // for 3 client connections; -1: at most one per worker (2)
	}{
		{"safe", http.MethodPost, 3}, {"safe", http.MethodGet, -1},
		{"aggressive", http.MethodPost, -1}, {"never", http.MethodGet, 3},
	} {
		t.Run(c.policy+"/"+c.method, func(t *testing.T) {
			f := tcpLab(t, nginxHTTP1, "    reuse: {policy: "+c.policy+"}\n")
			url := f.env.FrontendURL("http") + "/big" // 200 for any method
			var body []byte
			if c.method == http.MethodPost {
				body = []byte("not idempotent")
			}
			opened := f.env.Engine.Stats().BackendConnsOpened
			const clients = 3
			for range clients {
				cl := f.env.HTTPClient(1, false)
				for range 2 {
					if code, _ := exchange(t, cl, c.method, url, body); code != http.StatusOK {
						t.Fatalf("status %d", code)
					}
				}
				cl.CloseIdleConnections()
			}
			dials := f.env.Engine.Stats().BackendConnsOpened - opened
			t.Logf("FIGURES http1 policy=%s method=%s client_conns=%d requests=%d dials=%v", c.policy, c.method, clients, 2*clients, dials)
			switch {
			case c.dials < 0 && dials > 2:
				t.Fatalf("%s %s: %v dials for %d client connections, want at most one per worker", c.policy, c.method, dials, clients)
			case c.dials >= 0 && dials != c.dials:
				t.Fatalf("%s %s: %v dials for %d client connections, want %v", c.policy, c.method, dials, clients, c.dials)
			}
		})
	}
}
