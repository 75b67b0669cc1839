package testenv

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"
)

// WaitFor polls cond until it holds; it fails the test after 10s. It is for
// conditions reached through real sockets, where synctest cannot help.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// CheckGoroutines fails the test if goroutines started during it are still
// running once it ended (after its cleanups, polling up to 10s for them to
// exit).
func CheckGoroutines(t *testing.T) {
	before := goroutineIDs()
	t.Cleanup(func() {
		var leaked []string
		deadline := time.Now().Add(10 * time.Second)
		for {
			leaked = leaked[:0]
			for id, stack := range goroutineStacks() {
				if !before[id] {
					leaked = append(leaked, stack)
				}
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(leaked) > 0 {
			t.Errorf("%d goroutines leaked, first:\n%s", len(leaked), leaked[0])
		}
	})
}

// goroutineStacks returns the stacks of all goroutines by id, except the
// runtime's and the testing package's own.
func goroutineStacks() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := make(map[string]string)
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		header, _, _ := strings.Cut(s, "\n")
		id, ok := strings.CutPrefix(header, "goroutine ")
		if !ok {
			continue
		}
		id, _, _ = strings.Cut(id, " ")
		if strings.Contains(s, "testing.(*T).Run") || strings.Contains(s, "testing.tRunner") ||
			strings.Contains(s, "testing.(*M).") || strings.Contains(s, "runtime.goexit") && strings.Contains(s, "created by runtime") ||
			strings.Contains(s, "os/signal.signal_recv") || strings.Contains(s, "runtime/trace") {
			continue
		}
		out[id] = s
	}
	return out
}

func goroutineIDs() map[string]bool {
	ids := make(map[string]bool)
	for id := range goroutineStacks() {
		ids[id] = true
	}
	return ids
}
