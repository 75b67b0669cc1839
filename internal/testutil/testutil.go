package testutil

import (
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeout is how long Eventually and WaitFor wait for their condition.
const Timeout = 10 * time.Second

// Eventually polls cond until it holds or Timeout has passed, and reports
// whether it held. The pause between polls starts at 50µs and doubles up to
// 10ms, so a condition that holds at once is seen at once and a slow one
// costs little CPU.
func Eventually(cond func() bool) bool { return within(Timeout, cond) }

// within is Eventually with the timeout given.
func within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := 50 * time.Microsecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
	return true
}

// WaitFor fails t unless cond holds within Timeout; what names the
// condition in the failure. Call it from the test's own goroutine.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Eventually(cond) {
		t.Fatalf("timed out after %v waiting for %s", Timeout, what)
	}
}

// Goroutines counts the goroutines that have fn on their stack. Give fn as a
// frame prints it, with the opening parenthesis ("net/http.(*conn).serve("),
// so that goroutines merely created by fn ("created by ...") do not count.
func Goroutines(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			count := 0
			for _, g := range strings.Split(string(buf[:n]), "\n\n") {
				if strings.Contains(g, fn) {
					count++
				}
			}
			return count
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Serve accepts connections on l, each handled by handle on a goroutine of
// its own and closed when handle returns, until t's cleanup closes l; the
// cleanup then waits for every handler. An accept error other than the
// listener's close fails t.
func Serve(t testing.TB, l net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { _ = l.Close() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("accept: %v", err)
				}
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
}
