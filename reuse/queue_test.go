package reuse_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/mux"
	"github.com/xdpnet/xdpnet/mux/muxtest"
	"github.com/xdpnet/xdpnet/reuse"
)

// gatedDialer is a Dialer whose dials block until released, and that
// records how many were in flight at most.
type gatedDialer struct {
	opts    muxtest.Options
	gate    chan struct{} // closed: dials proceed
	fail    error
	started atomic.Int32
	now     atomic.Int32
	peak    atomic.Int32
}

func (d *gatedDialer) dial(ctx context.Context, _ reuse.Params) (mux.Conn, error) {
	d.started.Add(1)
	n := d.now.Add(1)
	defer d.now.Add(-1)
	for {
		p := d.peak.Load()
		if n <= p || d.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-d.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if d.fail != nil {
		return nil, d.fail
	}
	return muxtest.NewConn(d.opts), nil
}

// TestBurstIsNotADialStorm: a burst of attaches on a cold pool dials no
// more than MaxDialsPerServer at once, and no more connections than the
// burst needs at MaxStreams each: the others wait for the dials in flight.
func TestBurstIsNotADialStorm(t *testing.T) {
	d := &gatedDialer{opts: muxtest.Options{MaxStreams: 100}, gate: make(chan struct{})}
	pool, err := reuse.New(reuse.Config{Dial: d.dial, MaxStreams: 10, MaxDialsPerServer: 2, QueueTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const burst = 50
	leases := make(chan reuse.Lease, burst)
	errs := make(chan error, burst)
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() {
			l, err := pool.Worker(0).Attach(context.Background(), params("s1"), nil)
			if err != nil {
				errs <- err
				return
			}
			leases <- l
		})
	}
	waitQueued(t, pool, burst-2)
	close(d.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("attach: %v", err)
	}
	if p := d.peak.Load(); p > 2 {
		t.Errorf("%d dials in flight at once, want at most MaxDialsPerServer 2", p)
	}
	if n := d.started.Load(); n != burst/10 {
		t.Errorf("%d dials for %d leases at 10 streams each, want %d", n, burst, burst/10)
	}
	close(leases)
	for l := range leases {
		l.Done(nil)
	}
}

// waitQueued waits until at least n attaches have queued.
func waitQueued(t *testing.T, pool *reuse.Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pool.Stats().Queued < uint64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("%d attaches queued, want %d", pool.Stats().Queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestQueuedAttachTakesReturnedCredit: at the connection limit, an attach
// waits for a stream to finish and takes its credit, without a dial (under
// PolicyAggressive, so that a first request may take a proven connection).
func TestQueuedAttachTakesReturnedCredit(t *testing.T) {
	e := newEnv(t, reuse.Config{Policy: reuse.PolicyAggressive, MaxConnsPerServer: 1, QueueTimeout: time.Minute})
	e.opts = muxtest.Options{MaxStreams: 1, AutoCredit: true}
	l := e.attach(0, params("s1"), nil)
	got := make(chan error, 1)
	go func() {
		l2, err := e.pool.Worker(0).Attach(context.Background(), params("s1"), nil)
		if err == nil {
			if l2.Conn() != l.c {
				err = errors.New("queued attach got another connection")
			}
			l2.Done(nil)
		}
		got <- err
	}()
	waitQueued(t, e.pool, 1)
	l.Done(nil)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if st := e.pool.Stats(); st.Dials != 1 {
		t.Fatalf("%d dials, want 1", st.Dials)
	}
}

// TestWaitersShareAFailedDial: attaches that wait on a dial which fails
// get its error; they do not each try the server again.
func TestWaitersShareAFailedDial(t *testing.T) {
	refused := errors.New("connection refused")
	d := &gatedDialer{gate: make(chan struct{}), fail: refused}
	pool, err := reuse.New(reuse.Config{Dial: d.dial, MaxDialsPerServer: 1, QueueTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := pool.Worker(0).Attach(context.Background(), params("s1"), nil)
			errs <- err
		}()
	}
	waitQueued(t, pool, n-1)
	close(d.gate)
	for range n {
		if err := <-errs; !errors.Is(err, refused) {
			t.Fatalf("attach: %v, want the dial's error", err)
		}
	}
	if s := d.started.Load(); s != 1 {
		t.Fatalf("%d dials, want 1", s)
	}
}

// TestQueuedAttachEndsWithPoolClose: a waiter returns ErrPoolClosed at
// Close instead of waiting out its queue timeout.
func TestQueuedAttachEndsWithPoolClose(t *testing.T) {
	d := &gatedDialer{gate: make(chan struct{})}
	pool, err := reuse.New(reuse.Config{Dial: d.dial, MaxDialsPerServer: 1, QueueTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { <-d.gate; cancel() }() // the dial ends with the test
			_, err := pool.Worker(0).Attach(ctx, params("s1"), nil)
			errs <- err
		}()
	}
	waitQueued(t, pool, 1)
	pool.Close()
	if err := <-errs; !errors.Is(err, reuse.ErrPoolClosed) {
		t.Fatalf("queued attach after Close: %v, want ErrPoolClosed", err)
	}
	close(d.gate)
	<-errs
}
