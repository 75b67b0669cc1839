package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// RFC2544FrameSizes are the Ethernet frame sizes of RFC 2544 section 9.1
// (FCS included), plus 1280, the IPv6 minimum MTU, that the issue adds.
var RFC2544FrameSizes = []int{64, 128, 256, 512, 1024, 1280, 1518}

// FCSLen is the Ethernet frame check sequence length. RFC 2544 frame sizes
// include it; software interfaces never see it, so an Offerer sends frames
// of FrameSize-FCSLen bytes.
const FCSLen = 4

// Trial is one offer of frames to the device under test (RFC 2544 section
// 23: a trial sends at a fixed rate for a fixed duration).
type Trial struct {
	// Rate is the offered rate in frames per second; <= 0 offers as fast
	// as the source can (used to find the source's own maximum).
	Rate float64
	// FrameSize is the RFC 2544 frame size in bytes, FCS included.
	FrameSize int
	// Duration bounds the trial.
	Duration time.Duration
	// Probes asks the Offerer to measure latency (RFC 2544 section 26.2)
	// with timestamped probe frames, when it can.
	Probes bool
}

// TrialResult is what a trial counted.
type TrialResult struct {
	Sent     uint64 // frames the source sent
	Received uint64 // frames the device under test received and handled
	// Elapsed is how long the source actually sent (>= 0; the Offerer may
	// stop early when its bound is reached).
	Elapsed time.Duration
	// Latency holds probe latencies (only when Trial.Probes was set and the
	// Offerer can timestamp frames).
	Latency []time.Duration `json:"-"`
	// CPU is the CPU time the machine spent during the trial (all cores,
	// user + system + softirq), so pps per CPU-second can be derived.
	CPU time.Duration
}

// Loss is the fraction of sent frames not received.
func (r TrialResult) Loss() float64 {
	if r.Sent == 0 {
		return 0
	}
	if r.Received >= r.Sent {
		return 0
	}
	return float64(r.Sent-r.Received) / float64(r.Sent)
}

// Offerer offers frames to one device under test and counts what arrived.
// Implementations: the live-frames generator into a nic.Port receive loop,
// the same into the engine's UDP path, and a fake for tests.
type Offerer interface {
	Offer(ctx context.Context, t Trial) (TrialResult, error)
}

// SearchConfig bounds an RFC 2544 throughput search.
type SearchConfig struct {
	FrameSizes []int
	// Trial is the duration of each search trial (RFC 2544 asks for 60 s;
	// the suite affords a second, the short mode a fraction of one).
	Trial time.Duration
	// Confirm is the duration of the confirmation trial at the rate the
	// search found: a short trial passes at rates that lose frames over a
	// longer one, so the figure is the rate a Confirm-long trial passed.
	// That trial also carries the latency probes. Zero: Trial.
	Confirm time.Duration
	// Confirmations bounds the confirmation trials per frame size: a rate
	// whose confirmation lost frames is lowered to StepDown below the
	// lower of that rate and the rate received in that trial, and
	// confirmed again, at most this many times in all (default 3).
	Confirmations int
	// StepDown is the fraction a rate is lowered by after a failed
	// confirmation (default 0.1: to 90%).
	StepDown float64
	// MaxRate is the highest rate tried, in frames per second. Zero means:
	// measure it with one unlimited trial per frame size (the source's own
	// maximum, which on veth is the ceiling anyway).
	MaxRate float64
	// Resolution stops the search when the pass/fail interval is narrower
	// than this fraction of the upper bound (0.01 = 1%).
	Resolution float64
	// MaxTrials bounds the binary search per frame size.
	MaxTrials int
	// LossTolerance is the fraction of frames that may be lost for a trial
	// to pass. RFC 2544 throughput is zero loss (0); anything else is
	// reported beside the figures.
	LossTolerance float64
	// Progress, when set, is called after each trial.
	Progress func(size int, t Trial, r TrialResult, pass bool)
}

func (c SearchConfig) withDefaults() SearchConfig {
	if len(c.FrameSizes) == 0 {
		c.FrameSizes = RFC2544FrameSizes
	}
	if c.Trial <= 0 {
		c.Trial = time.Second
	}
	if c.Resolution <= 0 {
		c.Resolution = 0.01
	}
	if c.MaxTrials <= 0 {
		c.MaxTrials = 16
	}
	if c.Confirm <= 0 {
		c.Confirm = c.Trial
	}
	if c.Confirmations <= 0 {
		c.Confirmations = 3
	}
	if c.StepDown <= 0 || c.StepDown >= 1 {
		c.StepDown = 0.1
	}
	return c
}

// TrialRecord is one trial of a search, for the results file.
type TrialRecord struct {
	Rate     float64 `json:"rate_fps"` // offered (target)
	Sent     uint64  `json:"sent"`
	Received uint64  `json:"received"`
	Elapsed  float64 `json:"elapsed_s"`
	Pass     bool    `json:"pass"`
	// Confirm marks a confirmation trial (SearchConfig.Confirm long, with
	// latency probes).
	Confirm bool `json:"confirm,omitempty"`
}

// LatencySummary is the latency at the throughput rate (RFC 2544 26.2).
type LatencySummary struct {
	Samples int     `json:"samples"`
	P50us   float64 `json:"p50_us"`
	P90us   float64 `json:"p90_us"`
	P99us   float64 `json:"p99_us"`
	MaxUs   float64 `json:"max_us"`
	// CDF holds the sorted samples in microseconds (for the plot), at most
	// cdfPoints of them.
	CDF []float64 `json:"cdf_us,omitempty"`
}

const cdfPoints = 1000

// SizeResult is the throughput found for one frame size.
type SizeResult struct {
	FrameSize int `json:"frame_size"`
	// Rate is the throughput, frames per second: the highest offered rate
	// that passed a confirmation trial; 0 when none did.
	Rate float64 `json:"throughput_fps"`
	// SearchRate is the highest rate that passed the search's shorter
	// trials, the first rate confirmed; 0 when none passed.
	SearchRate float64 `json:"search_fps"`
	// Mbps is Rate in bits per second of Ethernet frames (FCS included),
	// divided by 1e6.
	Mbps float64 `json:"throughput_mbps"`
	// SourceMax is the rate the source reached unlimited (when MaxRate was
	// zero) or the configured MaxRate.
	SourceMax float64 `json:"source_max_fps"`
	// SourceBound is set when the device passed at the top of the range
	// (the source's maximum or MaxRate), confirmation included: the figure
	// is a lower bound set by the source, not the device's limit.
	SourceBound bool `json:"source_bound"`
	// CPUPerMframe is the CPU time (seconds, all cores) per million frames
	// received in the last confirmation trial.
	CPUPerMframe float64 `json:"cpu_s_per_mframe"`
	// Latency is from the probes of the last confirmation trial: the one
	// that passed at Rate, or the last that failed when none passed.
	Latency LatencySummary `json:"latency"`
	// LatencyTrialLoss is the loss of that trial (within LossTolerance
	// when it passed).
	LatencyTrialLoss float64       `json:"latency_trial_loss"`
	Trials           []TrialRecord `json:"trials"`
}

// Search runs the RFC 2544 section 26.1 throughput search for each frame
// size: a binary search on the offered rate for the highest rate at which
// no frame is lost (within LossTolerance) in a Trial-long trial, then a
// Confirm-long trial at that rate with latency probes (section 26.2). A
// rate whose confirmation loses frames is not zero-loss: it is stepped down
// and confirmed again. The number of trials is bounded by
// 1+MaxTrials+Confirmations per frame size.
func Search(ctx context.Context, o Offerer, cfg SearchConfig) ([]SizeResult, error) {
	cfg = cfg.withDefaults()
	var out []SizeResult
	for _, size := range cfg.FrameSizes {
		r, err := searchSize(ctx, o, cfg, size)
		if err != nil {
			return out, fmt.Errorf("frame size %d: %w", size, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func searchSize(ctx context.Context, o Offerer, cfg SearchConfig, size int) (SizeResult, error) {
	res := SizeResult{FrameSize: size}
	// A confirmation trial is the long one and carries the probes.
	trial := func(rate float64, confirm bool) (TrialResult, bool, error) {
		if err := ctx.Err(); err != nil {
			return TrialResult{}, false, err
		}
		t := Trial{Rate: rate, FrameSize: size, Duration: cfg.Trial, Probes: confirm}
		if confirm {
			t.Duration = cfg.Confirm
		}
		r, err := o.Offer(ctx, t)
		if err != nil {
			return r, false, err
		}
		if r.Sent == 0 {
			return r, false, errors.New("trial sent no frames")
		}
		pass := r.Loss() <= cfg.LossTolerance
		res.Trials = append(res.Trials, TrialRecord{
			Rate: rate, Sent: r.Sent, Received: r.Received, Elapsed: r.Elapsed.Seconds(), Pass: pass, Confirm: confirm,
		})
		if cfg.Progress != nil {
			cfg.Progress(size, t, r, pass)
		}
		return r, pass, nil
	}

	hi := cfg.MaxRate
	if hi <= 0 {
		r, pass, err := trial(0, false)
		if err != nil {
			return res, err
		}
		if r.Elapsed <= 0 {
			return res, errors.New("unlimited trial reported no elapsed time")
		}
		hi = float64(r.Sent) / r.Elapsed.Seconds()
		res.SourceMax = hi
		if pass {
			// Nothing lost at the source's own maximum: the device is not
			// the bottleneck. Confirm at that rate and say so.
			res.SourceBound = true
		}
	} else {
		res.SourceMax = hi
	}

	lo := 0.0
	if !res.SourceBound {
		for n := 0; n < cfg.MaxTrials && hi-lo > cfg.Resolution*hi; n++ {
			// The first probe is the top of the range: a device that keeps
			// up with MaxRate needs a single trial.
			rate := hi
			if n > 0 || cfg.MaxRate <= 0 {
				rate = (lo + hi) / 2
			}
			_, pass, err := trial(rate, false)
			if err != nil {
				return res, err
			}
			if pass {
				lo = rate
				if rate == hi {
					res.SourceBound = true
					break
				}
			} else {
				hi = rate
			}
		}
	} else {
		lo = hi
	}
	res.SearchRate = lo
	for rate, n := lo, 0; rate > 0 && n < cfg.Confirmations; n++ {
		r, pass, err := trial(rate, true)
		if err != nil {
			return res, err
		}
		res.LatencyTrialLoss = r.Loss()
		res.CPUPerMframe = 0
		if r.Received > 0 {
			res.CPUPerMframe = r.CPU.Seconds() / (float64(r.Received) / 1e6)
		}
		res.Latency = summarize(r.Latency)
		if pass {
			res.Rate = rate
			break
		}
		// Frames lost over the longer trial: the top of the range did
		// not hold either. The device kept up with at most the rate it
		// received at, so the next try is StepDown below that when it is
		// lower than the rate offered.
		res.SourceBound = false
		if r.Elapsed > 0 {
			rate = min(rate, float64(r.Received)/r.Elapsed.Seconds())
		}
		rate *= 1 - cfg.StepDown
	}
	res.Mbps = res.Rate * float64(size) * 8 / 1e6
	return res, nil
}

func summarize(lat []time.Duration) LatencySummary {
	if len(lat) == 0 {
		return LatencySummary{}
	}
	us := make([]float64, len(lat))
	for i, d := range lat {
		us[i] = float64(d) / float64(time.Microsecond)
	}
	slices.Sort(us)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(us)))) - 1
		return us[max(0, min(i, len(us)-1))]
	}
	s := LatencySummary{Samples: len(us), P50us: q(0.50), P90us: q(0.90), P99us: q(0.99), MaxUs: us[len(us)-1]}
	if len(us) <= cdfPoints {
		s.CDF = us
	} else {
		s.CDF = make([]float64, cdfPoints)
		for i := range s.CDF {
			s.CDF[i] = us[(i*(len(us)-1))/(cdfPoints-1)]
		}
	}
	return s
}
