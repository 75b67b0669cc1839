package benchsuite

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// fakeDUT loses every frame above its capacity (frames/s, per frame size)
// and offers at most sourceMax frames/s. It is deterministic: no clock.
type fakeDUT struct {
	capacity  func(size int) float64
	sourceMax float64
	latency   time.Duration
	trials    int
	err       error
}

func (f *fakeDUT) Offer(ctx context.Context, t Trial) (TrialResult, error) {
	f.trials++
	if f.err != nil {
		return TrialResult{}, f.err
	}
	rate := t.Rate
	if rate <= 0 || rate > f.sourceMax {
		rate = f.sourceMax
	}
	sec := t.Duration.Seconds()
	sent := uint64(rate * sec)
	recv := min(sent, uint64(f.capacity(t.FrameSize)*sec))
	r := TrialResult{Sent: sent, Received: recv, Elapsed: t.Duration, CPU: t.Duration / 2}
	if t.Probes {
		for i := range 100 {
			r.Latency = append(r.Latency, f.latency+time.Duration(i)*time.Microsecond)
		}
	}
	return r, nil
}

func TestSearchFindsCapacity(t *testing.T) {
	dut := &fakeDUT{
		capacity:  func(size int) float64 { return 3e6 * 64 / float64(size) },
		sourceMax: 4.9e6,
		latency:   10 * time.Microsecond,
	}
	var calls int
	cfg := SearchConfig{
		FrameSizes: []int{64, 512, 1518},
		Trial:      time.Second,
		Resolution: 0.005,
		MaxTrials:  20,
		Progress:   func(int, Trial, TrialResult, bool) { calls++ },
	}
	res, err := Search(context.Background(), dut, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 {
		t.Fatalf("results: %d", len(res))
	}
	for _, r := range res {
		want := 3e6 * 64 / float64(r.FrameSize)
		if want > dut.sourceMax {
			want = dut.sourceMax
		}
		if r.Rate > want || r.Rate < want*(1-2*cfg.Resolution) {
			t.Errorf("size %d: found %.0f fps, capacity %.0f", r.FrameSize, r.Rate, want)
		}
		if r.SourceMax != dut.sourceMax {
			t.Errorf("size %d: source max %.0f", r.FrameSize, r.SourceMax)
		}
		if len(r.Trials) > cfg.MaxTrials+2 {
			t.Errorf("size %d: %d trials, want at most %d (a device that loses nothing over long trials needs one confirmation)",
				r.FrameSize, len(r.Trials), cfg.MaxTrials+2)
		}
		if last := r.Trials[len(r.Trials)-1]; !last.Pass || last.Rate != r.Rate {
			t.Errorf("size %d: confirming trial %+v", r.FrameSize, last)
		}
		if r.Latency.Samples != 100 || r.Latency.P50us != 59 || r.Latency.P99us != 108 || r.Latency.MaxUs != 109 {
			t.Errorf("size %d: latency %+v", r.FrameSize, r.Latency)
		}
		if math.Abs(r.Mbps-r.Rate*float64(r.FrameSize)*8/1e6) > 1e-6 {
			t.Errorf("size %d: Mbit/s %f", r.FrameSize, r.Mbps)
		}
		if r.CPUPerMframe <= 0 {
			t.Errorf("size %d: cpu per Mframe %f", r.FrameSize, r.CPUPerMframe)
		}
	}
	if calls != dut.trials {
		t.Errorf("progress called %d times for %d trials", calls, dut.trials)
	}
}

func TestSearchSourceBound(t *testing.T) {
	dut := &fakeDUT{capacity: func(int) float64 { return 1e9 }, sourceMax: 1e6}
	res, err := Search(context.Background(), dut, SearchConfig{FrameSizes: []int{64}, Trial: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; !r.SourceBound || r.Rate != 1e6 || len(r.Trials) != 2 {
		t.Errorf("got %+v; want source-bound at 1e6 after the unlimited and the confirming trial", r)
	}

	// With a configured MaxRate the first trial is at that rate.
	dut.trials = 0
	res, err = Search(context.Background(), dut, SearchConfig{FrameSizes: []int{64}, Trial: time.Second, MaxRate: 5e5})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; !r.SourceBound || r.Rate != 5e5 || dut.trials != 2 {
		t.Errorf("got %+v after %d trials", r, dut.trials)
	}
}

func TestSearchNothingPasses(t *testing.T) {
	dut := &fakeDUT{capacity: func(int) float64 { return 0 }, sourceMax: 1e6}
	res, err := Search(context.Background(), dut, SearchConfig{FrameSizes: []int{64}, Trial: time.Second, MaxTrials: 8})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Rate != 0 || len(r.Trials) != 9 || r.Latency.Samples != 0 {
		t.Errorf("got %+v; want rate 0 after 1+8 trials and no confirming trial", r)
	}
}

func TestSearchLossTolerance(t *testing.T) {
	// Loses 0.1% at every rate: zero loss never passes, 0.2% tolerance does.
	lossy := offerFunc(func(_ context.Context, t Trial) (TrialResult, error) {
		rate := t.Rate
		if rate <= 0 {
			rate = 1e6
		}
		sent := uint64(rate * t.Duration.Seconds())
		return TrialResult{Sent: sent, Received: sent - max(1, sent/1000), Elapsed: t.Duration}, nil
	})
	res, err := Search(context.Background(), lossy, SearchConfig{FrameSizes: []int{64}, Trial: time.Second, LossTolerance: 0.002})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].SourceBound || res[0].Rate != 1e6 {
		t.Errorf("with tolerance: %+v", res[0])
	}
	res, err = Search(context.Background(), lossy, SearchConfig{FrameSizes: []int{64}, Trial: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Rate != 0 {
		t.Errorf("zero loss: %+v", res[0])
	}
}

// longTrialLoss is a device that keeps up with rates up to short in
// trials of a second and up to long in longer ones (a noisy machine's
// stalls show in long trials only); the source reaches sourceMax.
func longTrialLoss(short, long, sourceMax float64) offerFunc {
	return func(_ context.Context, t Trial) (TrialResult, error) {
		rate := t.Rate
		if rate <= 0 {
			rate = sourceMax
		}
		capacity := short
		if t.Duration > time.Second {
			capacity = long
		}
		sec := t.Duration.Seconds()
		sent := uint64(rate * sec)
		r := TrialResult{Sent: sent, Received: min(sent, uint64(capacity*sec)), Elapsed: t.Duration, CPU: t.Duration}
		if t.Probes {
			r.Latency = []time.Duration{time.Duration(sec) * time.Microsecond}
		}
		return r, nil
	}
}

// TestSearchConfirms: the rate 1 s trials find loses frames over 10 s; the
// search steps it down until a 10 s trial loses nothing, and reports that.
func TestSearchConfirms(t *testing.T) {
	cfg := SearchConfig{FrameSizes: []int{64}, Trial: time.Second, Confirm: 10 * time.Second, Resolution: 0.001, MaxTrials: 30}
	res, err := Search(context.Background(), longTrialLoss(1e6, 0.85e6, 2e6), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.SearchRate > 1e6 || r.SearchRate < 0.998e6 {
		t.Fatalf("search rate %.0f, want about 1e6", r.SearchRate)
	}
	var confirms []TrialRecord
	for _, tr := range r.Trials {
		if tr.Confirm {
			confirms = append(confirms, tr)
		}
	}
	// The search rate loses frames over 10 s; the device received 0.85e6
	// frames/s there, and 10% below that passes.
	if len(confirms) != 2 || confirms[0].Pass || !confirms[1].Pass || confirms[1].Elapsed != 10 {
		t.Fatalf("confirmation trials: %+v", confirms)
	}
	if want := 0.9 * 0.85e6; math.Abs(r.Rate-want) > 1 || r.Rate != confirms[1].Rate {
		t.Errorf("rate %.0f, want %.0f (the confirmed one)", r.Rate, want)
	}
	if r.LatencyTrialLoss != 0 || r.Latency.Samples != 1 || r.Latency.P50us != 10 || r.SourceBound {
		t.Errorf("latency and loss from the passing confirmation: %+v", r)
	}
	if math.Abs(r.Mbps-r.Rate*64*8/1e6) > 1e-6 {
		t.Errorf("Mbit/s %f for rate %.0f", r.Mbps, r.Rate)
	}
}

// TestSearchUnconfirmed: a device that passes at the source's maximum in
// short trials but loses a frame in every long one has no zero-loss rate:
// bounded confirmations, each StepDown lower, then rate 0, not
// source-bound, the loss reported.
func TestSearchUnconfirmed(t *testing.T) {
	stalls := offerFunc(func(_ context.Context, t Trial) (TrialResult, error) {
		rate := t.Rate
		if rate <= 0 {
			rate = 1e6
		}
		sent := uint64(rate * t.Duration.Seconds())
		r := TrialResult{Sent: sent, Received: sent, Elapsed: t.Duration}
		if t.Duration > time.Second {
			r.Received--
		}
		return r, nil
	})
	cfg := SearchConfig{FrameSizes: []int{64}, Trial: time.Second, Confirm: 10 * time.Second, Confirmations: 4}
	res, err := Search(context.Background(), stalls, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.Rate != 0 || r.SearchRate != 1e6 || r.SourceBound || r.Mbps != 0 || r.LatencyTrialLoss == 0 {
		t.Errorf("got %+v; want no confirmed rate after a search that found the source's maximum", r)
	}
	if len(r.Trials) != 1+4 {
		t.Fatalf("%d trials, want the unlimited one and 4 confirmations", len(r.Trials))
	}
	if last := r.Trials[4].Rate; math.Abs(last-1e6*0.9*0.9*0.9) > 1 {
		t.Errorf("last confirmation at %.0f, want three 10%% steps below 1e6", last)
	}
}

type offerFunc func(context.Context, Trial) (TrialResult, error)

func (f offerFunc) Offer(ctx context.Context, t Trial) (TrialResult, error) { return f(ctx, t) }

func TestSearchErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := Search(context.Background(), &fakeDUT{err: boom}, SearchConfig{FrameSizes: []int{64, 128}})
	if !errors.Is(err, boom) {
		t.Errorf("offer error: got %v", err)
	}
	silent := offerFunc(func(context.Context, Trial) (TrialResult, error) { return TrialResult{Elapsed: time.Second}, nil })
	if _, err := Search(context.Background(), silent, SearchConfig{FrameSizes: []int{64}}); err == nil {
		t.Error("a source that sends nothing must be an error, not a zero figure")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dut := &fakeDUT{capacity: func(int) float64 { return 1 }, sourceMax: 1e6}
	if _, err := Search(ctx, dut, SearchConfig{FrameSizes: []int{64}}); !errors.Is(err, context.Canceled) || dut.trials != 0 {
		t.Errorf("cancelled: err %v after %d trials", err, dut.trials)
	}
}

func TestSummarizeDownsamplesCDF(t *testing.T) {
	lat := make([]time.Duration, 5000)
	for i := range lat {
		lat[i] = time.Duration(len(lat)-i) * time.Microsecond
	}
	s := summarize(lat)
	if s.Samples != 5000 || len(s.CDF) != cdfPoints || s.CDF[0] != 1 || s.CDF[cdfPoints-1] != 5000 {
		t.Errorf("summary: samples %d, cdf %d points from %v to %v", s.Samples, len(s.CDF), s.CDF[0], s.CDF[len(s.CDF)-1])
	}
	if s.P50us != 2500 || s.P99us != 4950 {
		t.Errorf("quantiles: %+v", s)
	}
}
