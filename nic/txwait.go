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
// busy loop. That poll also bounds the cost of a release that happens
// between a sender's failed Alloc and its WaitTX, which registers too late
// to be woken by it.
const (
	txWaitFirstPoll = 20 * time.Microsecond
	txWaitMaxPoll   = time.Millisecond
)

// txWaiters wakes every goroutine in WaitTX at once: they wait on ch, which
// a notification closes (and the next waiter replaces).
type txWaiters struct {
	n  atomic.Int32 // goroutines in WaitTX; notify does nothing while 0
	mu sync.Mutex
	// +checklocks:mu
	ch chan struct{}
}

// arm registers a waiter and returns the channel that wakes it.
func (w *txWaiters) arm() <-chan struct{} {
	w.n.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

func (w *txWaiters) disarm() { w.n.Add(-1) }

// notify wakes the waiters, if any. It costs one atomic load otherwise, so
// the completion and release paths call it on every batch.
func (w *txWaiters) notify() {
	if w.n.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
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
	deadline := time.Now().Add(timeout)
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	poll := txWaitFirstPoll
	for {
		ch := p.txWait.arm()
		// Registered: a completion or release from now on closes ch.
		// Reap first, in case the kernel completed sends already.
		if p.Complete() > 0 {
			p.txWait.disarm()
			return true
		}
		if t == nil {
			p.ctr.txWaits.Add(1)
		}
		d := min(poll, time.Until(deadline))
		if d <= 0 {
			p.txWait.disarm()
			return false
		}
		if t == nil {
			t = time.NewTimer(d)
		} else {
			t.Reset(d)
		}
		var woken bool
		select {
		case <-ch:
			woken = true
		case <-t.C:
		}
		p.txWait.disarm()
		p.ctr.txWaitWakeups.Add(1)
		if p.closed.Load() {
			return false
		}
		if woken {
			return true
		}
		poll = min(2*poll, txWaitMaxPoll)
	}
}
