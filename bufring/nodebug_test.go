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
