package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xdpnet/xdpnet/internal/testutil"
)

// `xdpnet run` with an access log: curl's requests are logged, and after
// the file is renamed SIGHUP makes the engine write to a new one (log
// rotation), even when the configuration file is bad at that moment.
func TestRunAccessLogRotation(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed (make deps)")
	}
	dir := t.TempDir()
	_, pc, certFile := startLoopOrigin(t, dir)

	admin, front := freePort(t), freePort(t)
	logFile := filepath.Join(dir, "access.log")
	cfg := filepath.Join(dir, "x.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `dataplane: kernel
workers: 1
admin: %q
access_log: {path: %q}
frontends: [{name: web, listen: %q, protocol: http, backend: b}]
backends: [{name: b, tls: {ca: %q}, servers: [{name: o, address: %q}]}]
`, admin, logFile, front, certFile, pc.LocalAddr()), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr := startRun(t, cfg)
	if !testutil.Eventually(func() bool {
		resp, err := http.Get("http://" + admin + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}) {
		t.Fatalf("engine did not come up\n%s", stderr.String())
	}
	get := func(path string) {
		t.Helper()
		out, err := exec.Command(curl, "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "http://"+front+path).CombinedOutput()
		if err != nil || string(out) != "200" {
			t.Fatalf("curl %s: %q %v", path, out, err)
		}
	}
	hasLine := func(file, path string) bool {
		b, _ := os.ReadFile(file)
		return strings.Contains(string(b), `"path":"`+path+`"`)
	}
	get("/before")
	if !testutil.Eventually(func() bool { return hasLine(logFile, "/before") }) {
		t.Fatal("no access log line for /before")
	}
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cfg, []byte("bogus: 1\n"), 0o600) // the reload fails; the reopen must not
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, stderr, "reload refused")
	get("/after")
	if !testutil.Eventually(func() bool { return hasLine(logFile, "/after") }) {
		t.Fatal("no access log line for /after in the new file")
	}
	if hasLine(logFile+".1", "/after") || !hasLine(logFile+".1", "/before") {
		t.Error("the rotated file has the wrong lines")
	}
}
