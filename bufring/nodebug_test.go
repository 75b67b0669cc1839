//go:build !bufring_debug

package bufring

import "testing"

// TestDebugOff documents that plain builds carry no ownership checks: the
// tracker is not even allocated. The checks themselves are tested by
// debug_test.go under -tags bufring_debug.
func TestDebugOff(t *testing.T) {
	p := newPool(t, FrameConfig{Frames: 8, FrameSize: 2048})
	if p.dbg != nil {
		t.Fatal("tracker allocated without the bufring_debug tag")
	}
}

// TestDoubleReleaseDoesNotHang checks that without debug checks releases
// beyond the shared ring's capacity (only double releases can produce them)
// are dropped and counted, not spun on.
func TestDoubleReleaseDoesNotHang(t *testing.T) {
	p := newPool(t, FrameConfig{Frames: 4, FrameSize: 2048, CacheSize: 1})
	c := p.NewCache("c")
	a, _ := c.Get() // 3 frames left in the ring of 8 slots
	for range 10 {
		c.Put(a)
	}
	c.Flush()
	if s := p.Stats(); s.Overflows != 5 || s.Shared != 8 {
		t.Fatalf("stats: %+v", s)
	}
}
