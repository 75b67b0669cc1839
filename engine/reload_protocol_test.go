package engine_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/config"
)

// TestLabReloadChangesProtocolInPlace: a reload that turns the http
// frontend at 198.18.1.1:8080 into an https one on the same address (and
// back) is applied, not refused with "address already in use", while wrk
// loads another, unchanged frontend without a failed request; curl gets
// HTTPS, then plain HTTP again, from nginx behind.
func TestLabReloadChangesProtocolInPlace(t *testing.T) {
	t.Parallel()
	f := startFaultLab(t, faultOpts{kinds: []originKind{nginxHTTP1}, edit: defaultChecks,
		moreFrontends: "  - {name: keep, listen: \"198.18.1.1:8081\", protocol: http, backend: origins}\n"})
	if _, ok := waitServing(f.env, f.url(), time.Now(), recoverWithin); !ok {
		t.Fatal("the engine did not serve")
	}
	cert := writeLabCert(t, filepath.Join(t.TempDir(), "fe"), "198.18.1.1")
	running := *f.env.Config
	reload := func(protocol string) {
		t.Helper()
		next := running
		next.Frontends = slices.Clone(running.Frontends)
		fe := &next.Frontends[0]
		fe.Protocol, fe.TLS = protocol, nil
		if protocol == config.ProtoHTTPS {
			fe.TLS = &config.ServerTLS{Cert: cert.cert, Key: cert.key}
		}
		if err := next.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := f.env.Engine.Reload(&next); err != nil {
			t.Fatalf("reload to %s on the same address: %v", protocol, err)
		}
	}
	curl := func(url string) string {
		t.Helper()
		out, err := runIn(t, f.env.StartClient, 30*time.Second, "curl", "-sS", "-k", "-m", "10", "-o", "/dev/null", "-w", "%{http_code} %{scheme}", url)
		if err != nil {
			t.Fatalf("curl %s: %v: %s", url, err, out)
		}
		return out
	}

	load := startWrk(t, f.env, 4, 4*time.Second, "http://198.18.1.1:8081/index.html")
	waitRequests(t, f.env, 100, load)
	reload(config.ProtoHTTPS)
	if got := curl("https://198.18.1.1:8080/index.html"); got != "200 HTTPS" {
		t.Errorf("after the reload to https: curl got %q", got)
	}
	reload(config.ProtoHTTP)
	if got := curl("http://198.18.1.1:8080/index.html"); got != "200 HTTP" {
		t.Errorf("after the reload back to http: curl got %q", got)
	}
	out, _ := load.wait(t, 30*time.Second)
	fig, err := parseWrk(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if fig.Requests == 0 || fig.failed() != 0 {
		t.Errorf("wrk on the unchanged frontend across both reloads: %v", fig)
	}
}
