package engine

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/backend"
	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/origin"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// freeUDPAddr returns a loopback UDP address nobody listens on.
func freeUDPAddr(t *testing.T) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	a := pc.LocalAddr().(*net.UDPAddr)
	pc.Close()
	return a
}

// TestOriginStartsAfterEngine: a server whose origin is not there yet fails
// requests with a 502/503 that names the backend and the reason, and is
// used as soon as it starts.
func TestOriginStartsAfterEngine(t *testing.T) {
	cert, roots := labCert(t)
	addr := freeUDPAddr(t)
	os := []testOrigin{{Server: &origin.Server{Name: "late"}, Addr: addr}}
	e := loopEngine(t, roots, baseConfig("http", os, ""))
	url := "http://" + e.FrontendAddr("fe").String() + "/"
	c := &http.Client{Timeout: 10 * time.Second}

	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusGatewayTimeout && resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("request to a missing origin: %d, want a 5xx of the gateway's", resp.StatusCode)
	}
	ps := resp.Header.Get("Proxy-Status")
	if !strings.HasPrefix(ps, "xdpnet; error=") || !strings.Contains(ps, `next-hop="be`) {
		t.Errorf("Proxy-Status %q does not name the proxy, the error and the backend", ps)
	}
	if !strings.Contains(string(body), "backend be") {
		t.Errorf("error body %q does not name the backend", body)
	}

	pc, err := net.ListenUDP("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &origin.Server{Name: "late"}
	go s.Serve(pc, cert)
	t.Cleanup(func() { s.Close() })
	started := time.Now()
	testutil.WaitFor(t, "the late origin to serve", func() bool {
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	t.Logf("late origin served %v after it started", time.Since(started).Round(time.Millisecond))
}

// TestBurstDialsWhatItNeeds: a burst of concurrent requests on a cold
// backend opens about as many connections as the burst needs streams at
// max_streams each per worker, not one per request, and fails none.
func TestBurstDialsWhatItNeeds(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 1, "")
	cfg := baseConfig("http", os, "    reuse: {policy: aggressive, max_streams: 50, max_idle: 2}\n")
	// The checks' 500ms timeout is about the machine under this load and
	// the race detector, not the dials counted here.
	cfg = replaceOnce(t, cfg, "health_check: {interval: 500ms, timeout: 500ms, rise: 1, fall: 2}", "health_check: {enabled: false}")
	e := loopEngine(t, roots, cfg)
	url := "http://" + e.FrontendAddr("fe").String() + "/bytes/1024"
	const conc = 200
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
		start  = make(chan struct{})
	)
	for range conc {
		wg.Go(func() {
			<-start
			for range 4 {
				resp, err := c.Get(url)
				if err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("Proxy-Status")))
					mu.Unlock()
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed, first: %s", len(failed), conc*4, failed[0])
	}
	opened := counterValue(t, e, "xdpnet_backend_connections_opened_total", nil)
	// 200 streams at 50 each: 4 connections per worker (2 workers), and
	// a few more where a burst outran the credit of the dials in flight.
	limit := float64(2 * (conc/50 + 2))
	t.Logf("%d requests, %v backend connections opened (limit %v)", conc*4, opened, limit)
	if opened > limit {
		t.Fatalf("%v backend connections opened for %d concurrent requests, want at most %v", opened, conc, limit)
	}
}

// TestSafeSharesFromTheFirstRequest: under the default policy (safe), fresh
// client connections' first requests share the established HTTP/3 backend
// connection instead of each dialling one (HAProxy's safe keeps them off
// idle connections because HTTP/1 cannot tell an unprocessed request; HTTP/3
// can, see RetryableFirst in backend.New).
func TestSafeSharesFromTheFirstRequest(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 1, "")
	e := loopEngine(t, roots, baseConfig("http", os, ""))
	url := "http://" + e.FrontendAddr("fe").String() + "/bytes/100"
	const clients = 40
	for i := range clients {
		tr := &http.Transport{DisableKeepAlives: true} // a fresh client connection per request
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("client %d: %s", i, resp.Status)
		}
	}
	// At most one connection per worker (2); the health check's own is not
	// pooled.
	opened := counterValue(t, e, "xdpnet_backend_connections_opened_total", nil)
	st := e.Stats().Reuse
	t.Logf("%d client connections, %v backend connections opened, %d takeovers", clients, opened, st.Takeovers)
	if opened > 2 {
		t.Fatalf("%v backend connections for %d fresh client connections, want at most one per worker", opened, clients)
	}
	// The client connections are spread over the 2 workers by a hash of
	// their address (all on one: odds 2^-39). A worker without a
	// connection of its own takes the other's idle one over instead of
	// dialling: one connection and some takeovers, or two connections.
	if opened == 1 && st.Takeovers == 0 {
		t.Fatalf("one backend connection served both workers without a takeover: %+v", st)
	}
}

// TestReloadClearsBackoff: SIGHUP (Engine.Reload) is the operator's "try
// again now": a server backing off after failed dials is dialled at once.
func TestReloadClearsBackoff(t *testing.T) {
	_, roots := labCert(t)
	os := []testOrigin{{Server: &origin.Server{Name: "gone"}, Addr: freeUDPAddr(t)}}
	cfgText := baseConfig("http", os, "")
	cfgText = replaceOnce(t, cfgText, "timeouts: {connect: 1s, request: 5s}", "timeouts: {connect: 1s, request: 5s, backoff_min: 1m, backoff_max: 1m}")
	e := loopEngine(t, roots, cfgText)
	srv := func() *backend.Server {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.backends["be"].Server(0)
	}
	before := srv()
	before.DialFailed(time.Now(), time.Minute, time.Minute)
	if before.BackoffLeft(time.Now()) <= 0 {
		t.Fatal("no backoff after a failed dial")
	}
	cfg, err := config.Parse([]byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if srv() != before {
		t.Fatal("the reload rebuilt an unchanged backend")
	}
	if left := before.BackoffLeft(time.Now()); left > 0 {
		t.Fatalf("backoff %v left after a reload", left)
	}
}

// TestOriginGracefulShutdownLosesNothing: an origin that shuts down
// gracefully (HTTP/3 GOAWAY, RFC 9114 section 5.2) under load: its
// requests in flight finish, new ones go to the other server (none is
// sent on the going-away connection), and no request fails, POSTs
// included.
func TestOriginGracefulShutdownLosesNothing(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 2, "")
	cfg := replaceOnce(t, baseConfig("http", os, ""), "health_check: {interval: 500ms, timeout: 500ms, rise: 1, fall: 2}", "health_check: {enabled: false}")
	e := loopEngine(t, roots, cfg)
	url := "http://" + e.FrontendAddr("fe").String()
	c := &http.Client{Timeout: 10 * time.Second}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		failed  []string
		stopped = make(chan struct{})
	)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopped:
					if i > 20 {
						return
					}
				default:
				}
				var resp *http.Response
				var err error
				if w%2 == 0 {
					resp, err = c.Post(url+"/echo", "text/plain", strings.NewReader("not idempotent"))
				} else {
					resp, err = c.Get(url + "/sleep?d=20ms")
				}
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("w%d %s (%s)", w, resp.Status, resp.Header.Get("Proxy-Status"))
					}
				}
				if err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
				}
			}
		})
	}
	testutil.WaitFor(t, "load on both origins", func() bool {
		return os[0].Stats().Requests > 20 && os[1].Stats().Requests > 20
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := os[1].Shutdown(ctx); err != nil {
		t.Errorf("origin shutdown: %v", err)
	}
	close(stopped)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d requests failed across a graceful origin shutdown, first: %s", len(failed), failed[0])
	}
	t.Logf("origin served %d requests, the other %d", os[1].Stats().Requests, os[0].Stats().Requests)
}

// TestSilentOriginProbedAndClosed: an origin killed without a word (its
// socket closed first, so no CONNECTION_CLOSE goes out, and the kernel
// reports no ICMP on the engine's unconnected sockets) leaves requests
// waiting on connections that will never answer. After timeouts.probe
// the engine PINGs them, closes the silent ones and retries the
// idempotent requests elsewhere, instead of answering 504 after the
// request timeout.
func TestSilentOriginProbedAndClosed(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 2, "")
	cfg := replaceOnce(t, baseConfig("http", os, ""), "health_check: {interval: 500ms, timeout: 500ms, rise: 1, fall: 2}",
		"health_check: {enabled: false, timeout: 300ms}")
	cfg = replaceOnce(t, cfg, "timeouts: {connect: 1s, request: 5s}", "timeouts: {connect: 1s, request: 5s, probe: 300ms}")
	e := loopEngine(t, roots, cfg)
	url := "http://" + e.FrontendAddr("fe").String() + "/sleep?d=200ms"
	c := &http.Client{Timeout: 20 * time.Second}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	for range 8 {
		wg.Go(func() {
			for range 6 {
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s (%s)", resp.Status, resp.Header.Get("Proxy-Status"))
					}
				}
				if err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
				}
			}
		})
	}
	testutil.WaitFor(t, "requests in flight on both origins", func() bool {
		return os[0].Stats().Requests > 4 && os[1].Stats().Requests > 4
	})
	os[1].Kill()
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d requests failed after an origin died silently, first: %s", len(failed), failed[0])
	}
	if n := counterValue(t, e, "xdpnet_backend_silent_connections_total", nil); n == 0 {
		t.Fatal("no silent connection counted")
	}
}
