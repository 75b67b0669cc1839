package engine

import (
	"sync"
	"sync/atomic"
)

// counter is one live counter or gauge of the engine. The code updates it
// with atomics; the stats snapshot (stats.go) reads it, and /stats and
// /metrics are both made from that snapshot, so they cannot disagree.
type counter struct{ v atomic.Int64 }

func (c *counter) Inc()        { c.v.Add(1) }
func (c *counter) Dec()        { c.v.Add(-1) }
func (c *counter) Add(n int64) { c.v.Add(n) }
func (c *counter) Set(n int64) { c.v.Store(n) }

// labelValues are the label values of one counter of a counterVec, in the
// order the vec documents; unused trailing ones are empty. An array, not a
// slice, so that it is a map key and a lookup does not allocate.
type labelValues [3]string

// counterVec is a family of counters by label values, created on first
// use. Its method set mirrors the Prometheus vectors it replaces, so the
// call sites read the same.
type counterVec struct {
	mu sync.RWMutex
	m  map[labelValues]*counter
}

// WithLabelValues returns the counter of lvs (at most len(labelValues)),
// creating it at zero.
func (v *counterVec) WithLabelValues(lvs ...string) *counter {
	var k labelValues
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
			v.m = map[labelValues]*counter{}
		}
		c = &counter{}
		v.m[k] = c
	}
	return c
}

// each calls fn with every counter's label values and value.
func (v *counterVec) each(fn func(k labelValues, n int64)) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for k, c := range v.m {
		fn(k, c.v.Load())
	}
}
