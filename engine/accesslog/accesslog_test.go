package accesslog

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type count struct{ n atomic.Int64 }

func (c *count) Inc() { c.n.Add(1) }

func TestLineFields(t *testing.T) {
	var out syncBuf
	l, err := New(Options{Path: Stdout, Sample: 1, Queue: 4, Stdout: &out, Dropped: &count{}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	l.Log(Entry{Time: at, Client: "198.18.1.2:40000", Frontend: "web", Route: "api", Backend: "b", Server: "s1",
		Method: "GET", Authority: "api.example", Path: "/v1/x", Status: 200, BytesIn: 3, BytesOut: 1000,
		Duration: 1500 * time.Millisecond, Upstream: 250 * time.Millisecond, Retries: 1, Reused: true})
	l.Close()
	var m map[string]any
	if err := json.Unmarshal([]byte(out.String()), &m); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	want := map[string]any{"time": "2026-12-07T17:00:00Z", "client": "198.18.1.2:40000", "frontend": "web", "route": "api",
		"backend": "b", "server": "s1", "method": "GET", "authority": "api.example", "path": "/v1/x", "status": 200.0,
		"bytes_in": 3.0, "bytes_out": 1000.0, "duration": 1.5, "upstream_duration": 0.25, "retries": 1.0, "reused": true}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, m[k], m[k], v)
		}
	}
	if len(m) != len(want) {
		t.Errorf("line has %d fields, want %d: %v", len(m), len(want), m)
	}
}

// A full queue drops and counts; Log never blocks, even with the writer
// stuck.
func TestFullQueueDrops(t *testing.T) {
	r, w, err := os.Pipe() // nobody reads: the writer blocks on its first flush
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var drops count
	l, err := New(Options{Path: Stdout, Sample: 1, Queue: 2, Stdout: w, Dropped: &drops})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 128<<10) // above the pipe's and the buffer's size
	for range 100 {
		l.Log(Entry{Path: big})
	}
	if d := drops.n.Load(); d < 100-2-1 {
		t.Errorf("dropped %d of 100 with a queue of 2 and a stuck writer", d)
	}
	w.Close() // the writer's write fails; Close returns
	l.Close()
}

func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "access.log")
	l, err := New(Options{Path: p, Sample: 1, Queue: 16, Dropped: &count{}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Log(Entry{Path: "/first"})
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil { // /first is written before the reopen
		t.Fatal(err)
	}
	l.Log(Entry{Path: "/second"})
	l.Close()
	old, _ := os.ReadFile(p + ".1")
	cur, _ := os.ReadFile(p)
	if !strings.Contains(string(old), "/first") || strings.Contains(string(old), "/second") || !strings.Contains(string(cur), "/second") {
		t.Errorf("rotated file %q, new file %q", old, cur)
	}
	if err := l.Reopen(); err != ErrClosed {
		t.Errorf("Reopen after Close: %v", err)
	}
}

func TestSampling(t *testing.T) {
	l := &Logger{opts: Options{Sample: 0.25}}
	n := 0
	for range 10000 {
		if l.Sampled() {
			n++
		}
	}
	if n < 2000 || n > 3000 {
		t.Errorf("sample 0.25 kept %d of 10000", n)
	}
}
