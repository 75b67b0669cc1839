package pktgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Sender transmits frames for Run: Send sends up to n frames and returns how
// many it sent. Run calls it from one goroutine (the caller's), so a sender
// bound to a thread's network namespace works when Run runs on that thread.
type Sender interface {
	Send(ctx context.Context, n uint64) (uint64, error)
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, n uint64) (uint64, error)

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, n uint64) (uint64, error) { return f(ctx, n) }

// Bounds of Config.
const (
	DefaultBatch = 1 << 16
	// MaxDuration bounds every run, also one bounded by Count only.
	MaxDuration = time.Hour
	// stallLimit is the number of consecutive Sends that send nothing after
	// which Run gives up.
	stallLimit = 1000
)

// ErrUnbounded is returned for a Config with neither Count nor Duration.
var ErrUnbounded = errors.New("pktgen: run needs a count or a duration")

// Config bounds and paces a Run.
type Config struct {
	// Count stops the run after this many frames; 0 means no count bound.
	Count uint64
	// Duration stops the run after this long; 0 means MaxDuration, and is
	// allowed only with a Count.
	Duration time.Duration
	// Rate limits the frames per second, on average over the run, sending
	// PaceInterval's worth per Send; 0 means as fast as possible.
	Rate float64
	// PaceInterval is the time one paced Send covers (default 1 ms). A
	// sender with a high fixed cost per call, such as the live-frames
	// generator, needs a longer one, and sends in bursts.
	PaceInterval time.Duration
	// Batch bounds the frames per Send; 0 means DefaultBatch. The first
	// Send gets a quarter of it; later ones are also shortened to what the
	// sender's observed rate fits in the time left, so a run overshoots
	// Duration by at most that first quarter batch.
	Batch uint64
	// FrameSize (FCS included) turns frame counts into bit rates.
	FrameSize int
	// Progress, if set, is called about once a second, between Sends.
	Progress func(Progress)
}

// Progress reports a run's last interval (about a second).
type Progress struct {
	Elapsed   time.Duration // since the start
	Sent      uint64        // since the start
	Interval  time.Duration // since the previous report
	Frames    uint64        // in the interval
	FrameSize int
}

// PPS is the interval's frame rate.
func (p Progress) PPS() float64 { return rate(p.Frames, p.Interval) }

// String is the live progress line.
func (p Progress) String() string {
	return fmt.Sprintf("%6.1fs  %s  %s  total %d", p.Elapsed.Seconds(), fmtPPS(p.PPS()),
		fmtBits(p.PPS()*float64(p.FrameSize)*8), p.Sent)
}

// Result is the outcome of a run.
type Result struct {
	Sent      uint64
	Elapsed   time.Duration
	FrameSize int
}

// PPS is the run's average frame rate.
func (r Result) PPS() float64 { return rate(r.Sent, r.Elapsed) }

// BitsPerSecond is the run's average bit rate of FrameSize-byte frames.
func (r Result) BitsPerSecond() float64 { return r.PPS() * float64(r.FrameSize) * 8 }

// String is the summary line.
func (r Result) String() string {
	return fmt.Sprintf("sent %d frames of %d bytes in %.3fs: %s, %s", r.Sent, r.FrameSize,
		r.Elapsed.Seconds(), fmtPPS(r.PPS()), fmtBits(r.BitsPerSecond()))
}

func rate(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func fmtPPS(pps float64) string {
	if pps >= 1e6 {
		return fmt.Sprintf("%.3f Mpps", pps/1e6)
	}
	return fmt.Sprintf("%.1f kpps", pps/1e3)
}

func fmtBits(bps float64) string {
	if bps >= 1e9 {
		return fmt.Sprintf("%.3f Gbit/s", bps/1e9)
	}
	return fmt.Sprintf("%.1f Mbit/s", bps/1e6)
}

func (c *Config) validate() error {
	switch {
	case c.Count == 0 && c.Duration == 0:
		return ErrUnbounded
	case c.Duration < 0 || c.Duration > MaxDuration:
		return fmt.Errorf("pktgen: duration %v out of range (0, %v]", c.Duration, MaxDuration)
	case c.Rate < 0:
		return fmt.Errorf("pktgen: negative rate %v", c.Rate)
	case c.PaceInterval < 0 || c.PaceInterval > time.Second:
		return fmt.Errorf("pktgen: pace interval %v out of range [0, 1s]", c.PaceInterval)
	}
	if c.PaceInterval == 0 {
		c.PaceInterval = time.Millisecond
	}
	if c.Duration == 0 {
		c.Duration = MaxDuration
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	return nil
}

// Run sends frames through s until the count or the duration is reached or
// ctx ends, pacing to cfg.Rate. It returns what was sent, with ctx's error
// when ctx ended the run, or the sender's error.
func Run(ctx context.Context, cfg Config, s Sender) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	chunk := cfg.Batch
	if cfg.Rate > 0 {
		chunk = max(1, min(cfg.Batch, uint64(cfg.Rate*cfg.PaceInterval.Seconds())))
	}
	var (
		sent     uint64
		sendTime time.Duration // spent in Send, for the sender's own rate
		stalls   int
		lastTick = start
		lastSent uint64
		nextTick = start.Add(time.Second)
	)
	result := func() Result {
		return Result{Sent: sent, Elapsed: time.Since(start), FrameSize: cfg.FrameSize}
	}
	tick := func(now time.Time) {
		if now.Before(nextTick) {
			return
		}
		if cfg.Progress != nil {
			cfg.Progress(Progress{Elapsed: now.Sub(start), Sent: sent, Interval: now.Sub(lastTick),
				Frames: sent - lastSent, FrameSize: cfg.FrameSize})
		}
		lastTick, lastSent = now, sent
		for !now.Before(nextTick) {
			nextTick = nextTick.Add(time.Second)
		}
	}
	for {
		now := time.Now()
		if !now.Before(deadline) || (cfg.Count > 0 && sent >= cfg.Count) {
			return result(), nil
		}
		if err := ctx.Err(); err != nil {
			return result(), err
		}
		want := chunk
		// Paced: send a whole chunk whenever the schedule rate*elapsed has
		// caught up with what was sent, so the run is never more than one
		// chunk (about a millisecond) ahead of it.
		if cfg.Rate > 0 && float64(sent) > cfg.Rate*now.Sub(start).Seconds() {
			wake := start.Add(time.Duration(math.Ceil(float64(sent) / cfg.Rate * float64(time.Second))))
			// Rounding can put wake at or before now: still let time pass.
			wake = later(wake, now.Add(time.Microsecond))
			if err := sleepUntil(ctx, earliest(wake, nextTick, deadline)); err != nil {
				return result(), err
			}
			tick(time.Now())
			continue
		}
		if cfg.Count > 0 {
			want = min(want, cfg.Count-sent)
		}
		if sendTime > 0 {
			fits := float64(sent) / sendTime.Seconds() * deadline.Sub(now).Seconds()
			want = max(1, min(want, uint64(math.Ceil(fits))))
		} else {
			// The sender's rate is unknown yet: a quarter batch first.
			want = max(1, min(want, cfg.Batch/4))
		}
		n, err := s.Send(ctx, want)
		sendTime += time.Since(now)
		sent += n
		if err != nil {
			return result(), err
		}
		if n == 0 {
			if stalls++; stalls >= stallLimit {
				return result(), fmt.Errorf("pktgen: sender sent nothing %d times in a row", stalls)
			}
		} else {
			stalls = 0
		}
		tick(time.Now())
	}
}

func earliest(t time.Time, ts ...time.Time) time.Time {
	for _, u := range ts {
		if u.Before(t) {
			t = u
		}
	}
	return t
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
