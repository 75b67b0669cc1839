package bufring

import (
	"fmt"
	"sync/atomic"
)

// tracker records, in debug builds only, whether each frame is held by a user
// (taken) or by the pool (a ring or a cache). Every transition is a
// compare-and-swap, so a double release or a frame handed out twice is caught
// at the call that causes it, on whichever goroutine makes it.
type tracker struct {
	frameSize uint64
	state     []atomic.Uint32 // 0: in the pool, 1: taken
}

func newTracker(frames, frameSize int) *tracker {
	return &tracker{frameSize: uint64(frameSize), state: make([]atomic.Uint32, frames)}
}

func (t *tracker) index(addr uint64, op string) uint64 {
	i := addr / t.frameSize
	if addr%t.frameSize != 0 || i >= uint64(len(t.state)) {
		panic(fmt.Sprintf("bufring: %s of foreign address %#x (frames are multiples of %d below %#x)",
			op, addr, t.frameSize, uint64(len(t.state))*t.frameSize))
	}
	return i
}

// take marks addr as handed to a user.
func (t *tracker) take(addr uint64) {
	if !t.state[t.index(addr, "get")].CompareAndSwap(0, 1) {
		panic(fmt.Sprintf("bufring: frame %#x handed out twice", addr))
	}
}

// give marks addr as returned to the pool.
func (t *tracker) give(addr uint64) {
	if !t.state[t.index(addr, "release")].CompareAndSwap(1, 0) {
		panic(fmt.Sprintf("bufring: double release of frame %#x", addr))
	}
}

func (t *tracker) taken(i int) bool { return t.state[i].Load() == 1 }
