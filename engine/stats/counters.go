package stats

import (
	"sync"
	"sync/atomic"
)

// Counter is one live counter or gauge of the engine. The code updates it
// with atomics; the snapshot ([Counters.Snapshot]) reads it, and /stats and
// /metrics are both made from that snapshot, so they cannot disagree.
type Counter struct{ v atomic.Int64 }

func (c *Counter) Inc()        { c.v.Add(1) }
func (c *Counter) Dec()        { c.v.Add(-1) }
func (c *Counter) Add(n int64) { c.v.Add(n) }
func (c *Counter) Set(n int64) { c.v.Store(n) }

// Load is the counter's value.
func (c *Counter) Load() int64 { return c.v.Load() }

// Labels are the label values of one counter of a Vec, in the
// order the vec documents; unused trailing ones are empty. An array, not a
// slice, so that it is a map key and a lookup does not allocate.
type Labels [3]string

// Vec is a family of counters by label values, created on first
// use. Its method set mirrors the Prometheus vectors it replaces, so the
// call sites read the same.
type Vec struct {
	mu sync.RWMutex
	m  map[Labels]*Counter
}

// WithLabelValues returns the counter of lvs (at most len(Labels)),
// creating it at zero.
func (v *Vec) WithLabelValues(lvs ...string) *Counter {
	var k Labels
	copy(k[:], lvs)
	v.mu.RLock()
	c := v.m[k]
	v.mu.RUnlock()
	if c != nil {
		return c
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c = v.m[k]; c == nil {
		if v.m == nil {
			v.m = map[Labels]*Counter{}
		}
		c = &Counter{}
		v.m[k] = c
	}
	return c
}

// Each calls fn with every counter's label values and value.
func (v *Vec) Each(fn func(k Labels, n int64)) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for k, c := range v.m {
		fn(k, c.v.Load())
	}
}
