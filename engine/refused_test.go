package engine_test

import (
	"strings"
	"testing"
	"time"
)

// TestTCPBackendRefusedNamed: with health checks off, a request to an
// HTTP/1.1 backend whose nginx was killed (the port answers RST) gets 502
// with Proxy-Status error=connection_refused (RFC 9209 section 2.3.4) and
// the reason in its body, not "backend error".
func TestTCPBackendRefusedNamed(t *testing.T) {
	t.Parallel()
	f := startFaultLab(t, faultOpts{kinds: []originKind{nginxHTTP1},
		edit: []string{"health_check: {interval: 500ms, timeout: 400ms, path: /healthz, rise: 2, fall: 2}", "health_check: {enabled: false}"}})
	if _, ok := waitServing(f.env, f.url(), time.Now(), recoverWithin); !ok {
		t.Fatal("the engine did not serve")
	}
	killOrigin(t, f)
	out, err := runIn(t, f.env.StartClient, 30*time.Second, "curl", "-sS", "-m", "10", "-i", f.url())
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "HTTP/1.1 502") || !strings.Contains(out, "error=connection_refused") || !strings.Contains(out, "connection refused") {
		t.Errorf("a request to a killed nginx got\n%s\nwant 502 with Proxy-Status error=connection_refused", out)
	}
}
