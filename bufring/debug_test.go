//go:build bufring_debug

package bufring

import (
	"strings"
	"testing"
)

func mustPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if s, _ := r.(string); !strings.Contains(s, want) {
			t.Fatalf("panic %v, want one mentioning %q", r, want)
		}
	}()
	fn()
}

func TestDebugDoubleRelease(t *testing.T) {
	p := newPool(t, FrameConfig{Frames: 8, FrameSize: 2048})
	c := p.NewCache("c")
	a, _ := c.Get()
	c.Put(a)
	mustPanic(t, "double release", func() { c.Put(a) })
	b, _ := c.Get()
	mustPanic(t, "double release", func() { c.PutBatch([]uint64{b, b}) })
}

func TestDebugForeignAddress(t *testing.T) {
	p := newPool(t, FrameConfig{Frames: 8, FrameSize: 2048})
	c := p.NewCache("c")
	mustPanic(t, "foreign address", func() { c.Put(100) })
	mustPanic(t, "foreign address", func() { c.Put(8 * 2048) })
}

func TestDebugDuplicateHandout(t *testing.T) {
	p := newPool(t, FrameConfig{Frames: 8, FrameSize: 2048, CacheSize: 2})
	c := p.NewCache("c")
	a, _ := c.Get()
	p.main.Push(a) // corrupt the pool: a is now both held and free
	d := p.NewCache("d")
	mustPanic(t, "handed out twice", func() {
		buf := make([]uint64, 8)
		d.GetBatch(buf)
	})
}

func TestDebugByteDoubleRelease(t *testing.T) {
	p, _ := NewBytePool(ByteConfig{Sizes: []int{64}})
	c := p.NewCache("c")
	b := c.Get(10)
	c.Put(b)
	mustPanic(t, "double release", func() { c.Put(b) })
	mustPanic(t, "foreign", func() { c.Put(make([]byte, 64)) })
}
