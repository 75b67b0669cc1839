package frontend

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// ConnLimit admits exactly max of many concurrent acquires, and none is
// lost on release.
func TestConnLimitConcurrent(t *testing.T) {
	var l ConnLimit
	l.SetMax(10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for range 100 {
		wg.Go(func() {
			if l.acquire() {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if admitted != 10 || l.n.Load() != 10 {
		t.Fatalf("admitted %d, count %d; want 10 and 10", admitted, l.n.Load())
	}
	l.release()
	if !l.acquire() || l.acquire() {
		t.Error("a released slot is not taken exactly once")
	}
}

// The Initial packets of one refused QUIC attempt count once; the same
// address a second later, or another address, counts again.
func TestRecentRefusals(t *testing.T) {
	var r recentRefusals
	a, b := netip.MustParseAddrPort("192.0.2.1:1000"), netip.MustParseAddrPort("192.0.2.1:1001")
	now := time.Now()
	if r.again(a, now) || !r.again(a, now.Add(time.Millisecond)) {
		t.Error("a second Initial of the same attempt was counted, or the first was not")
	}
	if r.again(b, now) {
		t.Error("another client port was taken for the same attempt")
	}
	if r.again(a, now.Add(2*time.Second)) {
		t.Error("a new attempt two seconds later was not counted")
	}
}
