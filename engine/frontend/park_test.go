package frontend

import (
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// TestParkedListExpiry checks the parked list's one timer on a fake clock:
// connections expire in the order they were parked, each its idle timeout
// after its own park, one that woke leaves the list and is not closed,
// and a drain takes the rest at once.
func TestParkedListExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 5 * time.Second
		fe := &Frontend{parked: newParkedList(idle)}
		park := func() *clientConn {
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			c := &clientConn{Conn: a, fe: fe, stop: func() {}}
			fe.parked.add(c)
			c.state.Store(connParked)
			return c
		}
		state := func(c *clientConn) int32 { synctest.Wait(); return c.state.Load() }

		first := park() // t=0
		time.Sleep(time.Second)
		second := park() // t=1s
		time.Sleep(time.Second)
		third := park() // t=2s
		time.Sleep(time.Second)
		// second wakes at t=3s: it leaves the list (wake's first step).
		if !second.state.CompareAndSwap(connParked, connResuming) {
			t.Fatal("second: not parked")
		}
		if d := fe.parked.remove(second); d != 2*time.Second {
			t.Errorf("second parked for %v; want 2s", d)
		}

		time.Sleep(idle - 3*time.Second - time.Nanosecond) // just before t=5s
		if s := state(first); s != connParked {
			t.Fatalf("first: state %d before its idle timeout; want parked", s)
		}
		time.Sleep(time.Nanosecond) // t=5s
		if s := state(first); s != connClosed {
			t.Fatalf("first: state %d at its idle timeout; want closed", s)
		}
		time.Sleep(3 * time.Second) // t=8s, past second's would-be expiry
		if s := state(second); s != connResuming {
			t.Errorf("second: state %d after it woke; want left alone", s)
		}
		if s := state(third); s != connClosed {
			t.Errorf("third: state %d at t=8s (parked at 2s); want closed", s)
		}

		// A drain takes whatever is parked, and the timer stops.
		fourth := park()
		fifth := park()
		fe.closeParked()
		if state(fourth) != connClosed || state(fifth) != connClosed {
			t.Errorf("after the drain: states %d, %d; want closed", fourth.state.Load(), fifth.state.Load())
		}
		fe.parked.mu.Lock()
		defer fe.parked.mu.Unlock()
		if fe.parked.head != nil || fe.parked.tail != nil {
			t.Error("the list is not empty after the drain")
		}
	})
}
