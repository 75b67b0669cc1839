package stack

import "testing"

// SetACKFilter switches the transmit ACK filter for the rest of t; the
// previous setting comes back at t's cleanup. Tests using it must not run
// in parallel with others: the switch is process-wide.
func SetACKFilter(t testing.TB, on bool) {
	old := ackFilterOn.Swap(on)
	t.Cleanup(func() { ackFilterOn.Store(old) })
}
