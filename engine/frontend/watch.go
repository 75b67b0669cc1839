package frontend

import (
	"context"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/engine/backend"
)

// watch is one attempt's state shared with the backend client's goroutines
// and its timer, in one allocation: whether the request (its headers or a
// byte of its body) went out, whether the response headers came, and one
// timer for both silences the attempt bounds. The probe (timeouts.probe)
// suspects the connection the request waits on (backend.Suspect) once per
// silence; the request timeout (timeouts.request) cancels the attempt. Both
// count from the last progress of the upload (a body read that moved
// bytes), so that they bound the server's silence, not an upload that
// moves. The timer fires at the earlier pending deadline and re-arms for
// the later one: one timer per attempt rather than one per timeout.
type watch struct {
	rt             *backend.Backend
	srv            *backend.Server
	cancel         context.CancelFunc // the attempt's context
	request, probe time.Duration      // 0: none

	gotHeaders, timedOut, wrote atomic.Bool
	sentOn                      atomic.Pointer[backend.Conn] // the connection the request waits on

	trace httptrace.ClientTrace

	mu sync.Mutex // orders the timer's arming (start, progress, stop) with fire
	// +checklocks:mu
	t *time.Timer
	// +checklocks:mu
	requestAt, probeAt time.Time // pending deadlines; zero: none
	// +checklocks:mu
	stopped bool
}

// newWatch starts the timeouts of an attempt whose context cancel ends,
// and returns the attempt's context with w's trace (the client marks the
// request sent once its headers are written).
func newWatch(ctx context.Context, cancel context.CancelFunc, rte *route, srv *backend.Server) (*watch, context.Context) {
	w := &watch{rt: rte.be, srv: srv, cancel: cancel, request: rte.request, probe: rte.probe}
	w.trace.WroteHeaders = w.sent
	w.trace.WroteRequest = func(httptrace.WroteRequestInfo) { w.wrote.Store(true) }
	w.mu.Lock()
	w.arm(time.Now())
	w.mu.Unlock()
	return w, httptrace.WithClientTrace(ctx, &w.trace)
}

func (w *watch) sent() { w.wrote.Store(true) }

// arm sets both deadlines from now and the timer to the earlier.
//
// +checklocks:mu
func (w *watch) arm(now time.Time) {
	if w.request > 0 {
		w.requestAt = now.Add(w.request)
	}
	if w.probe > 0 {
		w.probeAt = now.Add(w.probe)
	}
	w.rearm(now)
}

// rearm sets the timer to the earliest pending deadline.
//
// +checklocks:mu
func (w *watch) rearm(now time.Time) {
	next := w.requestAt
	if !w.probeAt.IsZero() && (next.IsZero() || w.probeAt.Before(next)) {
		next = w.probeAt
	}
	switch {
	case next.IsZero() || w.stopped:
	case w.t == nil:
		w.t = time.AfterFunc(next.Sub(now), w.fire)
	default:
		w.t.Reset(next.Sub(now))
	}
}

// fire runs the deadlines that passed: the probe suspects the connection,
// the request timeout cancels the attempt, unless the headers came.
func (w *watch) fire() {
	w.mu.Lock()
	if w.stopped || w.gotHeaders.Load() {
		w.mu.Unlock()
		return
	}
	now := time.Now()
	var probe, timeout bool
	if !w.probeAt.IsZero() && !now.Before(w.probeAt) {
		w.probeAt, probe = time.Time{}, true
	}
	if !w.requestAt.IsZero() && !now.Before(w.requestAt) {
		w.requestAt, timeout = time.Time{}, true
	}
	w.rearm(now)
	w.mu.Unlock()
	if probe {
		if c := w.sentOn.Load(); c != nil {
			w.rt.Suspect(w.srv, c)
		}
	}
	if timeout {
		w.timedOut.Store(true)
		w.cancel()
	}
}

// progress restarts both timeouts: the upload moved.
func (w *watch) progress() {
	if w.gotHeaders.Load() || w.timedOut.Load() {
		return
	}
	w.mu.Lock()
	w.arm(time.Now())
	w.mu.Unlock()
}

// headers marks the response headers come: the timeouts are over.
func (w *watch) headers() {
	w.gotHeaders.Store(true)
	w.stop()
}

// stop ends the timer for good (the attempt is over).
func (w *watch) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.t != nil {
		w.t.Stop()
	}
	w.mu.Unlock()
}
