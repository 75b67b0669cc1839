package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// readAccessLog decodes every line of the access log file at p.
func readAccessLog(t *testing.T, p string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("access log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// waitLines waits until the access log at p has n lines.
func waitLines(t *testing.T, p string, n int) []map[string]any {
	t.Helper()
	var lines []map[string]any
	if !testutil.Eventually(func() bool { lines = readAccessLog(t, p); return len(lines) >= n }) {
		t.Fatalf("access log has %d lines, want %d", len(lines), n)
	}
	return lines
}

// One access log line per request, checked field by field for requests
// from curl through routes to caddy and to a 404; the file is reopened
// after a rename (what SIGHUP does; cmd/xdpnet's test sends the signal).
func TestLabAccessLog(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	rl := startRouteLab(t, fmt.Sprintf("access_log: {path: %q}\n", logFile), "")
	env := rl.env
	before := time.Now()
	for range 2 {
		if status, _, body := curlHost(t, env, 8080, "api.example.test:8080", "/b/who"); status != "200" || body != "b" {
			t.Fatalf("curl: %s %q", status, body)
		}
	}
	if status, _, _ := curlHost(t, env, 8081, "nowhere.test", "/x"); status != "404" {
		t.Fatalf("strict frontend: %s, want 404", status)
	}
	lines := waitLines(t, logFile, 3)
	l := lines[1] // the second request: its backend connection was pooled
	client := env.Lab.ClientLink.PeerAddrs[0].String() + ":"
	for k, want := range map[string]any{
		"frontend": "http", "route": "api", "backend": "b", "server": "caddy", "method": "GET",
		"authority": "api.example.test:8080", "path": "/b/who", "status": 200.0, "bytes_in": 0.0,
		"bytes_out": 1.0, "retries": 0.0, "reused": true,
	} {
		if l[k] != want {
			t.Errorf("%s = %v, want %v", k, l[k], want)
		}
	}
	if c, _ := l["client"].(string); !strings.HasPrefix(c, client) {
		t.Errorf("client = %v, want %s<port>", l["client"], client)
	}
	ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(l["time"]))
	if err != nil || ts.Before(before.Add(-time.Second)) || ts.After(time.Now()) {
		t.Errorf("time = %v (%v), want a time during the test", l["time"], err)
	}
	d, _ := l["duration"].(float64)
	up, _ := l["upstream_duration"].(float64)
	if !(up > 0 && up <= d && d < 10) {
		t.Errorf("duration %v, upstream_duration %v: want 0 < upstream <= duration", d, up)
	}
	nf := lines[2]
	if nf["frontend"] != "strict" || nf["status"] != 404.0 || nf["route"] != "" || nf["server"] != "" || nf["path"] != "/x" {
		t.Errorf("404 line: %v", nf)
	}

	// Rotation: rename, reopen; the next line goes to a new file.
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	if err := env.Engine.ReopenAccessLog(); err != nil {
		t.Fatal(err)
	}
	curlHost(t, env, 8080, "other.test", "/who")
	if cur := waitLines(t, logFile, 1); cur[0]["route"] != "default" || cur[0]["backend"] != "a" || cur[0]["server"] != "gtlsserver" {
		t.Errorf("line after reopen: %v", cur[0])
	}
	if old := readAccessLog(t, logFile+".1"); len(old) != 3 {
		t.Errorf("rotated file has %d lines, want 3", len(old))
	}
}

// A queue of one in front of a log that cannot be written (a FIFO nobody
// reads until the load ends) drops lines under wrk and counts every one:
// lines written plus lines dropped is the requests served.
func TestLabAccessLogDropsCounted(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "access.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Opened for reading first (non-blocking), so that the engine's
	// open for writing does not wait.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The smallest pipe (a page): the writer blocks after a few lines.
	if _, err := unix.FcntlInt(r.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	env := startLab(t, "xdp", enginelab.Options{Config: config.Demo + fmt.Sprintf("access_log: {path: %q, queue: 1}\n", fifo)})
	out, err := startWrk(t, env, 4, 2*time.Second, env.FrontendURL("http")+"/bytes/100").wait(t, 30*time.Second)
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	// Drain the FIFO while the engine drains: its handlers finish (each
	// counts its request and logs or drops its line), then the writer
	// flushes and closes.
	lines := make(chan int, 1)
	go func() {
		n := 0
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			n++
		}
		lines <- n
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.Engine.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	st := env.Engine.Stats().Engine
	dropped := float64(st.AccessLogDropped)
	var served float64
	for _, byClass := range st.Frontends["http"].Requests {
		for _, n := range byClass {
			served += float64(n)
		}
	}
	written := <-lines
	t.Logf("wrk served %v requests: %d lines written, %v dropped", served, written, dropped)
	if dropped == 0 || float64(written)+dropped != served {
		t.Errorf("%d written + %v dropped, want > 0 dropped and the sum = %v requests", written, dropped, served)
	}
}
