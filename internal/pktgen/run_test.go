package pktgen

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// fakeSender sends at a fixed speed in synctest's fake time.
type fakeSender struct {
	pps   float64
	calls int
	max   uint64 // largest n asked for
	err   error  // returned once sent reaches failAt
	sent  uint64
	fail  uint64
}

func (f *fakeSender) Send(ctx context.Context, n uint64) (uint64, error) {
	f.calls++
	f.max = max(f.max, n)
	if f.err != nil && f.sent+n >= f.fail {
		n = f.fail - f.sent
		f.sent += n
		return n, f.err
	}
	time.Sleep(time.Duration(float64(n) / f.pps * float64(time.Second)))
	f.sent += n
	return n, nil
}

func TestRunCountUnpaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{pps: 5e6}
		r, err := Run(context.Background(), Config{Count: 1_000_000, Batch: 1 << 16, FrameSize: 64}, s)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent != 1_000_000 || s.sent != r.Sent || s.max != 1<<16 {
			t.Errorf("sent %d (sender %d), largest batch %d", r.Sent, s.sent, s.max)
		}
		if pps := r.PPS(); pps < 4.99e6 || pps > 5.01e6 {
			t.Errorf("rate %v, want the sender's 5 Mpps", pps)
		}
		if bps := r.BitsPerSecond(); bps != r.PPS()*64*8 {
			t.Errorf("bit rate %v", bps)
		}
	})
}

func TestRunRateAndProgress(t *testing.T) {
	for _, rate := range []float64{100, 1000, 250_000} {
		synctest.Test(t, func(t *testing.T) {
			var reports []Progress
			s := &fakeSender{pps: 5e6}
			cfg := Config{Duration: 3 * time.Second, Rate: rate, FrameSize: 128, Progress: func(p Progress) { reports = append(reports, p) }}
			r, err := Run(context.Background(), cfg, s)
			if err != nil {
				t.Fatal(err)
			}
			chunk := max(1, uint64(rate/1000))
			want := uint64(3 * rate)
			if r.Sent+chunk < want || r.Sent > want+chunk {
				t.Errorf("rate %v: sent %d in 3s, want %d ± %d", rate, r.Sent, want, chunk)
			}
			if s.max > chunk {
				t.Errorf("rate %v: batch %d, want at most %d", rate, s.max, chunk)
			}
			if len(reports) != 2 && len(reports) != 3 {
				t.Fatalf("rate %v: %d progress reports in 3s", rate, len(reports))
			}
			for i, p := range reports {
				if p.Interval < 990*time.Millisecond || p.Interval > 1010*time.Millisecond {
					t.Errorf("rate %v: report %d after %v", rate, i, p.Interval)
				}
				if got := p.PPS(); got < 0.98*rate || got > 1.02*rate+float64(chunk) {
					t.Errorf("rate %v: report %d says %v pps", rate, i, got)
				}
			}
		})
	}
}

// TestRunDurationShortensSends: a slow sender with big batches still stops
// near the deadline.
func TestRunDurationShortensSends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{pps: 1000}
		r, err := Run(context.Background(), Config{Duration: 2550 * time.Millisecond, Batch: 500}, s)
		if err != nil {
			t.Fatal(err)
		}
		if r.Elapsed < 2550*time.Millisecond || r.Elapsed > 2552*time.Millisecond || r.Sent < 2549 || r.Sent > 2551 {
			t.Errorf("sent %d in %v, want 2550 in 2.55s", r.Sent, r.Elapsed)
		}
	})
}

func TestRunBoundsAndErrors(t *testing.T) {
	for _, c := range []Config{{}, {Rate: 10}, {Count: 1, Rate: -1}, {Count: 1, PaceInterval: 2 * time.Second}, {Duration: -time.Second}, {Duration: 2 * MaxDuration}} {
		if _, err := Run(context.Background(), c, &fakeSender{pps: 1}); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := Run(context.Background(), Config{}, &fakeSender{pps: 1}); !errors.Is(err, ErrUnbounded) {
		t.Errorf("unbounded: %v", err)
	}
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		r, err := Run(context.Background(), Config{Count: 1000, Batch: 64}, &fakeSender{pps: 1e6, err: boom, fail: 100})
		if !errors.Is(err, boom) || r.Sent != 100 {
			t.Errorf("sender error: %d, %v", r.Sent, err)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		r, err := Run(context.Background(), Config{Count: 10}, SenderFunc(func(context.Context, uint64) (uint64, error) { return 0, nil }))
		if err == nil || r.Sent != 0 {
			t.Errorf("stalled sender: %d, %v", r.Sent, err)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		// A count-only run is still bounded in time.
		r, err := Run(context.Background(), Config{Count: 1 << 40, Rate: 1}, &fakeSender{pps: 1e6})
		if err != nil || r.Elapsed != MaxDuration {
			t.Errorf("count-only run: %v after %v", err, r.Elapsed)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		r, err := Run(ctx, Config{Duration: time.Minute, Rate: 1000}, &fakeSender{pps: 1e6})
		if !errors.Is(err, context.DeadlineExceeded) || r.Sent < 1400 || r.Sent > 1600 {
			t.Errorf("cancelled run: sent %d, %v", r.Sent, err)
		}
	})
}
