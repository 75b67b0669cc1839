//go:build !race

// The early-data lab tests run without the race detector (make test runs
// them in its non-race pass): quic-go's 0-RTT client writes the server's
// transport parameters on its connection goroutine while a stream opened
// before the handshake reads them (quic-go issue #4303, open), which the
// detector reports in quic-go's code in about one run in eight.

package engine_test

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/engine/stats"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// earlyCaddy is caddy (which accepts 0-RTT on HTTP/3) answering 425 Too
// Early to requests that carry Early-Data: 1 (RFC 8470 section 5.1) and the
// query tooearly=1, as an origin that refuses some requests in early data
// would, and echoing the Early-Data header it received in
// X-Seen-Early-Data.
var earlyCaddy = caddyOrigin(
	map[string]any{
		"match": []any{map[string]any{
			"query":  map[string]any{"tooearly": []string{"1"}},
			"header": map[string]any{"Early-Data": []string{"1"}},
		}},
		"handle": []any{map[string]any{"handler": "static_response", "status_code": http.StatusTooEarly}},
	},
	map[string]any{"handle": []any{map[string]any{"handler": "headers", "response": map[string]any{
		"set": map[string][]string{"X-Seen-Early-Data": {"{http.request.header.Early-Data}"}},
	}}}},
)

// earlyLab is an engine whose backend "origins" has early_data on and one
// third-party origin s0, and whose idle backend connections close after
// 750ms (timeouts.idle 1s), so that each request can find a new dial.
type earlyLab struct {
	env    *enginelab.Env
	kind   originKind
	addr   netip.AddrPort
	files  originFiles
	state  string
	origin *proc
	client *http.Client
}

func startEarlyLab(t *testing.T, kind originKind) *earlyLab {
	t.Helper()
	needTool(t, kind.name)
	e := &earlyLab{kind: kind, addr: netip.MustParseAddrPort("198.18.2.10:443"), state: t.TempDir()}
	e.files = newOriginFiles(t, e.addr.Addr().String())
	cfg := fmt.Sprintf(`dataplane: xdp
admin: 127.0.0.1:0
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - {name: http, listen: "198.18.1.1:8080", protocol: http, backend: origins}
backends:
  - name: origins
    protocol: h3
    early_data: true
    tls: {ca: %q}
    health_check: {enabled: false}
    timeouts: {connect: 2s, idle: 1s, request: 10s}
    servers:
      - {name: s0, address: %q}
`, e.files.cert, e.addr)
	e.env = startLab(t, "xdp", enginelab.Options{
		Config:       cfg,
		NoOrigins:    true,
		BeforeEngine: func(l *lab.Lab) error { return e.startOrigin(l.Backend) },
	})
	t.Cleanup(func() { // registered after startLab's: runs before the lab goes
		if e.origin != nil {
			e.origin.kill()
		}
	})
	e.client = e.env.HTTPClient(1, false)
	e.client.Transport.(*http.Transport).DisableKeepAlives = true
	return e
}

// startOrigin starts the origin in ns and returns once it answers.
func (e *earlyLab) startOrigin(ns *lab.NS) error {
	p, err := launchOrigin(e.kind, ns, e.addr, e.files, e.state)
	if err != nil {
		return err
	}
	e.origin = p
	_, err = originReady(e.kind, ns, e.addr, p, 10*time.Second)
	return err
}

func (e *earlyLab) server() stats.ServerStats {
	return *e.env.Engine.Stats().Engine.Backends["origins"].Servers["s0"]
}

// waitIdleClosed waits until the engine closed its idle backend connection.
func (e *earlyLab) waitIdleClosed(t *testing.T) {
	t.Helper()
	testutil.WaitFor(t, "the idle backend connection closed", func() bool { return e.env.Engine.Stats().BackendConnsOpen == 0 })
}

// send sends one request through the engine on a fresh backend connection,
// checks its status (and the page for a 200), and returns what the origin
// echoed of Early-Data (earlyCaddy only).
func (e *earlyLab) send(t *testing.T, method, path string, body io.Reader, want int) string {
	t.Helper()
	e.waitIdleClosed(t)
	url := e.env.FrontendURL("http") + path
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURES %s %s %s on a new backend connection: %d in %v (early requests so far %v)",
		e.kind.name, method, path, resp.StatusCode, time.Since(start).Round(10*time.Microsecond), e.server().EarlyRequests)
	if resp.StatusCode != want || want == http.StatusOK && len(b) != originPage {
		t.Fatalf("%s %s: %d with %d bytes, want %d", method, url, resp.StatusCode, len(b), want)
	}
	return resp.Header.Get("X-Seen-Early-Data")
}

// TestEarlyDataCaddy runs the backend's session resumption and 0-RTT
// against caddy: each request through the engine finds the connection of
// the one before closed for idleness (timeouts.idle 1s), so the engine
// dials again with the ticket caddy issued on it.
//
//   - the first dial has no ticket: a full handshake, nothing early;
//   - a GET then goes in 0-RTT on a resumed handshake and is answered
//     (early sent and accepted), carrying Early-Data: 1 to caddy;
//   - a POST on a resumed connection waits for the handshake: nothing
//     early, no Early-Data header at caddy;
//   - a GET caddy answers 425 in early data is sent again after the
//     handshake: the client sees 200, too_early counts it;
//   - caddy restarted has new ticket keys: it rejects the early data of
//     the next dial, and the GET is sent again on another connection
//     (rejected counts it) and answered.
func TestEarlyDataCaddy(t *testing.T) {
	e := startEarlyLab(t, earlyCaddy)
	const page = "/index.html"
	send := func(method, path string, body io.Reader, want int) string {
		t.Helper()
		return e.send(t, method, path, body, want)
	}
	check := func(what string, resumed uint64, early map[string]uint64) {
		t.Helper()
		// The resumption is counted once the handshake completes, which
		// can be after the response.
		testutil.WaitFor(t, what+": resumed handshakes counted", func() bool { return e.server().ResumedHandshakes == resumed })
		for result, n := range early {
			if got := e.server().EarlyRequests[result]; got != n {
				t.Fatalf("%s: early requests %s = %d, want %d (%v)", what, result, got, n, e.server().EarlyRequests)
			}
		}
	}

	if seen := send(http.MethodGet, page, nil, http.StatusOK); seen != "" {
		t.Errorf("first GET (no ticket yet) reached caddy with Early-Data %q", seen)
	}
	check("full handshake", 0, map[string]uint64{"sent": 0})

	if seen := send(http.MethodGet, page, nil, http.StatusOK); seen != "1" {
		t.Errorf("GET on a resumed connection reached caddy with Early-Data %q, want 1", seen)
	}
	check("early GET", 1, map[string]uint64{"sent": 1, "accepted": 1})

	if seen := send(http.MethodPost, page, strings.NewReader("not safe to replay"), http.StatusOK); seen != "" {
		t.Errorf("POST reached caddy with Early-Data %q: sent in early data", seen)
	}
	check("POST", 2, map[string]uint64{"sent": 1, "accepted": 1})

	send(http.MethodGet, page+"?tooearly=1", nil, http.StatusOK)
	check("425", 3, map[string]uint64{"sent": 2, "accepted": 1, "too_early": 1})

	// A new caddy process has new session ticket keys: the engine's
	// ticket no longer decrypts, and the early data is rejected.
	e.waitIdleClosed(t)
	e.origin.kill()
	if err := e.startOrigin(e.env.Lab.Backend); err != nil {
		t.Fatal(err)
	}
	if seen := send(http.MethodGet, page, nil, http.StatusOK); seen != "" {
		t.Errorf("GET after the rejection reached caddy with Early-Data %q: sent again in early data", seen)
	}
	check("rejected", 3, map[string]uint64{"sent": 3, "accepted": 1, "too_early": 1, "rejected": 1})

	// /metrics shows the same counts.
	got := map[string]float64{}
	for _, s := range scrapeMetrics(t, e.env, "xdpnet_backend_early_requests_total", "xdpnet_backend_resumed_handshakes_total") {
		got[s.name+"/"+s.labels["result"]] += s.value
	}
	want := map[string]float64{
		"xdpnet_backend_resumed_handshakes_total/": 3,
		"xdpnet_backend_early_requests_total/sent": 3, "xdpnet_backend_early_requests_total/accepted": 1,
		"xdpnet_backend_early_requests_total/rejected": 1, "xdpnet_backend_early_requests_total/too_early": 1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("/metrics %s = %v, want %v", k, got[k], v)
		}
	}
}

// TestEarlyDataGtlsserver runs early_data against ngtcp2's gtlsserver
// (GnuTLS), which resumes sessions but accepts or rejects 0-RTT as it sees
// fit (it rejected most attempts when tried by hand): whichever it does,
// every request is answered, and every early request is counted as
// accepted or rejected. A dial after a rejection holds no ticket, so of
// the requests after the first at least every other one goes early.
func TestEarlyDataGtlsserver(t *testing.T) {
	e := startEarlyLab(t, gtlsserver)
	const n = 6
	for range n {
		e.send(t, http.MethodGet, "/index.html", nil, http.StatusOK)
	}
	s := e.server()
	t.Logf("FIGURES gtlsserver %d GETs on fresh backend connections: resumed %d, early %v", n, s.ResumedHandshakes, s.EarlyRequests)
	sent := s.EarlyRequests["sent"]
	if sent < (n-1)/2 {
		t.Errorf("%d early requests in %d GETs, want at least %d", sent, n, (n-1)/2)
	}
	if got := s.EarlyRequests["accepted"] + s.EarlyRequests["rejected"]; got != sent || s.EarlyRequests["too_early"] != 0 {
		t.Errorf("early requests %v: accepted + rejected != sent", s.EarlyRequests)
	}
}
