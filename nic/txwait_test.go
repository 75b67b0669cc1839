package nic

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
)

// holdTX takes every frame Alloc can give and returns them.
func holdTX(p *Port) []Desc {
	var held []Desc
	descs := make([]Desc, 16)
	for {
		n := p.Alloc(descs)
		if n == 0 {
			return held
		}
		held = append(held, descs[:n]...)
	}
}

// completeConcurrently is fakeKernel.transmit for a kernel that runs
// beside the port's goroutines: it publishes its ring indices with atomic
// stores, as the real kernel's smp_store_release, so that the race
// detector sees the port's acquire loads pair with them.
func (k *fakeKernel) completeConcurrently() int {
	txProd, compCons := atomic.LoadUint32(&k.words[6]), atomic.LoadUint32(&k.words[10])
	n := 0
	for ; k.txCons != txProd && k.compProd-compCons < uint32(len(k.comp)); n++ {
		k.comp[k.compProd&uint32(len(k.comp)-1)] = k.tx[k.txCons&uint32(len(k.tx)-1)].Addr
		k.txCons++
		k.compProd++
	}
	atomic.StoreUint32(&k.words[7], k.txCons)
	atomic.StoreUint32(&k.words[9], k.compProd)
	return n
}

// waitTXAsync runs WaitTX(timeout) on a goroutine, returns its result
// channel once it sleeps.
func waitTXAsync(t *testing.T, p *Port, timeout time.Duration) <-chan bool {
	t.Helper()
	before := p.ctr.txWaits.Load()
	done := make(chan bool, 1)
	go func() { done <- p.WaitTX(timeout) }()
	testutil.WaitFor(t, "WaitTX to sleep", func() bool { return p.ctr.txWaits.Load() > before })
	return done
}

func expectWoken(t *testing.T, done <-chan bool) {
	t.Helper()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("WaitTX reported nothing back")
		}
	case <-time.After(testutil.Timeout):
		t.Fatalf("WaitTX still asleep %v after frames came back", testutil.Timeout)
	}
}

// TestWaitTX: a sender with no free frame sleeps in WaitTX (issue 20 item
// 3) until frames come back: a Release wakes it at once, a completion the
// kernel posts without any event is found by its poll of the completion
// ring, and with neither it returns false at its timeout after a handful
// of wakeups, not a busy loop. Close wakes it too.
func TestWaitTX(t *testing.T) {
	t.Run("release", func(t *testing.T) {
		p, _ := newFakePort(t, 128, 32, 0)
		held := holdTX(p)
		if len(held) == 0 {
			t.Fatal("no frame to hold")
		}
		done := waitTXAsync(t, p, time.Minute)
		// The fill ring is full: the frames go to the pool, where the
		// waiter's Alloc finds them.
		p.Release(held)
		expectWoken(t, done)
		if n := p.Alloc(make([]Desc, 4)); n == 0 {
			t.Fatal("woken, but Alloc found no frame")
		}
	})
	t.Run("completion", func(t *testing.T) {
		p, k := newFakePort(t, 128, 32, 0)
		held := holdTX(p)
		for i := range held {
			held[i].Len = 64
		}
		n, err := p.Transmit(held[:8])
		if err != nil || n != 8 {
			t.Fatalf("Transmit: %d, %v", n, err)
		}
		done := waitTXAsync(t, p, time.Minute)
		if c := k.completeConcurrently(); c != 8 {
			t.Fatalf("the kernel completed %d frames, want 8", c)
		}
		expectWoken(t, done)
		if st := p.ownStats(); st.TxCompleted != 8 || st.TxWaitWakeups == 0 {
			t.Fatalf("completed %d, wakeups %d: want 8 reaped by the waiter's poll", st.TxCompleted, st.TxWaitWakeups)
		}
		p.Release(held[8:])
	})
	t.Run("timeout", func(t *testing.T) {
		p, _ := newFakePort(t, 128, 32, 0)
		held := holdTX(p)
		const timeout = 5 * time.Millisecond
		start := time.Now()
		if p.WaitTX(timeout) {
			t.Fatal("WaitTX reported frames back, none came")
		}
		if d := time.Since(start); d < timeout {
			t.Fatalf("WaitTX returned after %v, before its %v timeout", d, timeout)
		}
		// Polls at 20, 40, ... 640µs, then every 1ms: about ten.
		if st := p.ownStats(); st.TxWaits != 1 || st.TxWaitWakeups > 16 {
			t.Fatalf("waits %d, wakeups %d: want 1 wait and at most 16 wakeups in %v", st.TxWaits, st.TxWaitWakeups, timeout)
		}
		p.Release(held)
	})
	t.Run("close", func(t *testing.T) {
		p, _ := newFakePort(t, 128, 32, 0)
		holdTX(p)
		done := waitTXAsync(t, p, time.Minute)
		// Its error is the fake UMEM's: a Go slice, which munmap refuses.
		_ = p.Close()
		select {
		case ok := <-done:
			if ok {
				t.Fatal("WaitTX on a closed port reported frames back")
			}
		case <-time.After(testutil.Timeout):
			t.Fatal("WaitTX did not return on Close")
		}
	})
}

// TestFillPoolEmptyCounted: when every frame is held (sent, or received
// and not released), the fill ring cannot be refilled; the port counts it
// per queue (Stats.FillPoolEmpty, the xdpnet_xsk_fill_pool_empty_total
// metric, beside the kernel's fill_ring_empty drops) and refills once
// frames come back.
func TestFillPoolEmptyCounted(t *testing.T) {
	p, k := newFakePort(t, 128, 32, 0)
	held := holdTX(p)
	descs := make([]Desc, 32)
	var rx []Desc
	for range 64 {
		k.receive(p.umem, 32, 60)
		n, err := p.Receive(descs)
		if err != nil {
			t.Fatal(err)
		}
		rx = append(rx, descs[:n]...)
		if p.ownStats().FillPoolEmpty > 0 {
			break
		}
	}
	if p.ownStats().FillPoolEmpty == 0 {
		t.Fatalf("holding %d TX and %d received frames of 128, no refill found the pool empty", len(held), len(rx))
	}
	p.Release(rx)
	p.Release(held)
	p.rxMu.Lock()
	err := p.refillLocked(true)
	p.rxMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := k.lent(), min(uint32(len(k.fill)), uint32(p.cfg.FillFrames)); got != want {
		t.Fatalf("after the release the kernel holds %d frames for reception, want %d (the fill ring or FillFrames)", got, want)
	}
}
