package mux

import (
	"bytes"
	"runtime"
	"strings"
)

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
