package nic

import (
	"sync"
	"sync/atomic"
	"time"
)

// Waiting for transmit resources. A sender that finds no free frame (Alloc
// short) or no TX ring room (ErrRingFull) can only go on once frames come
// back: the kernel completes sends (the completion ring, reaped by Alloc,
// Transmit, Complete and the TX retry timer) or a holder gives frames back
// (Release). WaitTX parks the sender until one of those happens, instead of
// spinning on Alloc.
//
// The kernel raises no event for completions (poll reports the RX ring, and
// in zero-copy mode the NIC completes sends on its own time), so a waiter
// also reaps the completion ring itself, at intervals that double from
// txWaitFirstPoll to txWaitMaxPoll: a handful of wakeups per wait, never a
// busy loop. A release that happens between a sender's failed Alloc and
// its WaitTX left its frames in the receive side's cache; WaitTX moves
// them to the pool once registered.
const (
	txWaitFirstPoll = 20 * time.Microsecond
	txWaitMaxPoll   = time.Millisecond
)

// txWaiters wakes every goroutine in WaitTX at once: they wait on ch, which
// a notification closes (and the next waiter replaces). gen counts the
// notifications, so that a waiter between two sleeps, holding a channel
// already closed and replaced, still learns that one happened.
type txWaiters struct {
	// n counts the goroutines in WaitTX, for their whole wait: notify does
	// nothing while it is 0, and Release hands frames to the pool only
	// while it is not.
	n  atomic.Int32
	mu sync.Mutex
	// +checklocks:mu
	ch chan struct{}
	// +checklocks:mu
	gen uint64
}

// current returns the channel the next notification closes and the count
// of notifications so far.
func (w *txWaiters) current() (<-chan struct{}, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch, w.gen
}

// notify wakes the waiters, if any. It costs one atomic load otherwise, so
// the completion and release paths call it on every batch.
func (w *txWaiters) notify() {
	if w.n.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// WaitTX blocks until frames may have come back to the pool for Alloc, or
// TX ring room for Transmit — the kernel completed sends, or a caller
// released frames — or timeout passes, or the port closes. It reaps the
// completion ring itself at growing intervals (see above). It reports
// whether something came back; the caller tries Alloc or Transmit again
// either way. Stats.TxWaits counts the calls that found nothing back yet,
// Stats.TxWaitWakeups the times they woke up (notified, or to poll).
func (p *Port) WaitTX(timeout time.Duration) bool {
	if timeout <= 0 || p.closed.Load() {
		return false
	}
	// Registered for the whole wait: every completion or release from now
	// on notifies, and one that happens between two sleeps shows in gen.
	p.txWait.n.Add(1)
	defer p.txWait.n.Add(-1)
	ch, gen := p.txWait.current()
	// Frames released just before (by a holder that saw no waiter) went
	// to the receive side's cache, where Alloc cannot take them.
	p.handOverReleased()
	deadline := time.Now().Add(timeout)
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	poll := txWaitFirstPoll
	for {
		// Reap first, in case the kernel completed sends already.
		if p.Complete() > 0 {
			return true
		}
		if t == nil {
			p.ctr.txWaits.Add(1)
		}
		d := min(poll, time.Until(deadline))
		if d <= 0 {
			return false
		}
		if t == nil {
			t = time.NewTimer(d)
		} else {
			t.Reset(d)
		}
		select {
		case <-ch:
		case <-t.C:
		}
		p.ctr.txWaitWakeups.Add(1)
		if p.closed.Load() {
			return false
		}
		next, g := p.txWait.current()
		if g != gen {
			return true
		}
		ch = next
		poll = min(2*poll, txWaitMaxPoll)
	}
}

// handOverReleased moves frames the receive side's cache holds to the
// pool, where Alloc finds them, as Release does while a sender waits.
func (p *Port) handOverReleased() {
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	if !p.closed.Load() {
		p.rxCache.Flush()
	}
}
