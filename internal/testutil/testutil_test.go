package testutil

import (
	"testing"
	"time"
)

func TestWithin(t *testing.T) {
	t.Parallel()
	n := 0
	if !within(time.Second, func() bool { n++; return n == 5 }) || n != 5 {
		t.Errorf("within stopped after %d polls, want 5 and true", n)
	}
	start := time.Now()
	if within(30*time.Millisecond, func() bool { return false }) {
		t.Error("within of a condition that never holds reported true")
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > 5*time.Second {
		t.Errorf("within gave up after %v, want about 30ms", d)
	}
}
