package stack

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/waiter"
)

// ioDir is one direction's waiting state of a socket (UDPConn, tcpConn).
// wake holds at most one token: a readiness event, the deadline firing or
// Close put it there, and the
// waiter re-checks everything after taking it, so a stale token costs one
// retry and a missed one cannot happen (the entry stays registered).
type ioDir struct {
	wake  chan struct{}
	entry waiter.Entry
	dl    deadline
}

func (d *ioDir) init(wq *waiter.Queue, mask waiter.EventMask) {
	d.wake = make(chan struct{}, 1)
	d.dl.wake = d.wake
	d.entry.Init(waiter.ChannelNotifier(d.wake), mask)
	wq.EventRegister(&d.entry)
}

// deadline is one direction's deadline. expired is read on every call; the
// timer is made on the first deadline set and reset afterwards.
type deadline struct {
	expired atomic.Bool
	wake    chan struct{}

	mu sync.Mutex
	// +checklocks:mu
	at time.Time
	// +checklocks:mu
	timer *time.Timer
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = t
	if d.timer != nil {
		d.timer.Stop()
	}
	switch wait := time.Until(t); {
	case t.IsZero():
		d.expired.Store(false)
	case wait <= 0:
		d.expired.Store(true)
		notify(d.wake)
	default:
		d.expired.Store(false)
		if d.timer == nil {
			d.timer = time.AfterFunc(wait, d.fire)
		} else {
			d.timer.Reset(wait)
		}
	}
}

// fire runs when the timer expires; a deadline moved meanwhile wins.
func (d *deadline) fire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.at.IsZero() && !time.Now().Before(d.at) {
		d.expired.Store(true)
		notify(d.wake)
	}
}

func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
