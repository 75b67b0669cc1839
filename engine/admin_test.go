package engine

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/netapi"
)

// Admin read endpoints answer GET and HEAD, and 405 with Allow: GET, HEAD to
// any other method.
func TestAdminMethods(t *testing.T) {
	cert, roots := labCert(t)
	e := loopEngine(t, roots, baseConfig("http", loopOrigins(t, cert, 1, ""), ""))
	base := "http://" + e.AdminAddr().String()
	for _, path := range []string{"/metrics", "/stats", "/healthz"} {
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete} {
			req, _ := http.NewRequest(m, base+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := http.StatusOK
			if m != http.MethodGet && m != http.MethodHead {
				want = http.StatusMethodNotAllowed
				if a := resp.Header.Get("Allow"); a != "GET, HEAD" {
					t.Errorf("%s %s: Allow %q, want \"GET, HEAD\"", m, path, a)
				}
			}
			if resp.StatusCode != want {
				t.Errorf("%s %s: status %d, want %d", m, path, resp.StatusCode, want)
			}
		}
	}
}

// An admin endpoint on a non-loopback address (allowed by admin_public)
// logs a warning at start.
func TestAdminPublicWarns(t *testing.T) {
	cert, roots := labCert(t)
	cfg, err := config.Parse([]byte("admin_public: true\n" + strings.Replace(
		baseConfig("http", loopOrigins(t, cert, 1, ""), ""), `admin: "127.0.0.1:0"`, `admin: "0.0.0.0:0"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := New(cfg, Options{Net: &netapi.Kernel{N: 1}, Log: log, BackendRootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "level=WARN msg=\"admin endpoint on a non-loopback address") {
		t.Errorf("no warning for a public admin endpoint in:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Go's profiles are served under /debug/pprof/ only with admin_pprof.
func TestAdminPprof(t *testing.T) {
	cert, roots := labCert(t)
	for _, on := range []bool{false, true} {
		text := baseConfig("http", loopOrigins(t, cert, 1, ""), "")
		if on {
			text = "admin_pprof: true\n" + text
		}
		e := loopEngine(t, roots, text)
		resp, err := http.Get("http://" + e.AdminAddr().String() + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("admin_pprof %v: /debug/pprof/heap status %d, want %d", on, resp.StatusCode, want)
		}
		if on && !bytes.Contains(body, []byte("heap profile")) {
			t.Errorf("admin_pprof: /debug/pprof/heap is not a heap profile: %.200s", body)
		}
	}
}
