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

// TestDoubleReleaseDoesNotHang checks that without debug checks a double
// release into a full shared ring is dropped and counted, not spun on.
func TestDoubleReleaseDoesNotHang(t *testing.T) {
	p := newPool(t, FrameConfig{Frames: 4, FrameSize: 2048, CacheSize: 1})
	c := p.NewCache("c")
	a, _ := c.Get()
	c.Put(a)
	c.Put(a) // the cache of 1 is full: flushes a to the ring, caches a again
	c.Flush()
	if s := p.Stats(); s.Overflows != 1 || s.Shared != 4 {
		t.Fatalf("stats: %+v", s)
	}
}
