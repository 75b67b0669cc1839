package benchsuite

import (
	"context"
	"time"
)

// sender sends n copies of frame as fast as it can and says how many went
// out. The live-frames generator is one; it must be called on a thread in
// the sending namespace, so pace runs entirely on the caller's goroutine.
type sender interface {
	Send(ctx context.Context, frame []byte, n uint64) (uint64, error)
}

const (
	// unlimitedBurst is the batch of an unlimited trial: large enough that
	// the per-call cost of BPF_PROG_RUN vanishes, small enough to stop on
	// time.
	unlimitedBurst = 4096
	// paceSlot is the pacing granularity: a rate is sent as bursts of
	// rate*paceSlot frames, so the receiver sees at most that many
	// back-to-back frames more than a perfectly smooth source would send.
	paceSlot = 100 * time.Microsecond
	// probeEvery is the probe interval of a latency trial (RFC 2544 26.2
	// asks for one tagged frame per trial repeated 20 times; a stream of
	// probes through the trial gives a distribution instead).
	probeEvery = time.Millisecond
)

// pace sends frame at rate frames per second (<= 0: unlimited) for dur.
// With probe set, it sends a probe frame (stamped with the time since
// epoch) every probeEvery in place of a load frame. It returns the frames
// sent, probes included, and how long it sent.
func pace(ctx context.Context, s sender, frame []byte, rate float64, dur time.Duration,
	probe func(sinceEpoch time.Duration) []byte, epoch time.Time) (sent uint64, elapsed time.Duration, err error) {
	start := time.Now()
	end := start.Add(dur)
	burst := uint64(unlimitedBurst)
	if rate > 0 {
		burst = max(1, uint64(rate*paceSlot.Seconds()))
	}
	nextProbe := start
	for {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		if err := ctx.Err(); err != nil {
			return sent, now.Sub(start), err
		}
		if probe != nil && !now.Before(nextProbe) {
			n, err := s.Send(ctx, probe(time.Since(epoch)), 1)
			sent += n
			if err != nil {
				return sent, time.Since(start), err
			}
			nextProbe = nextProbe.Add(probeEvery)
			continue
		}
		want := burst
		if rate > 0 {
			// The first frame is due at the start, the next 1/rate later.
			target := uint64(rate*now.Sub(start).Seconds()) + 1
			if target <= sent {
				// Ahead of schedule: wait for the next slot.
				time.Sleep(min(paceSlot, end.Sub(now)))
				continue
			}
			want = min(target-sent, burst)
		}
		n, err := s.Send(ctx, frame, want)
		sent += n
		if err != nil {
			return sent, time.Since(start), err
		}
	}
	return sent, time.Since(start), nil
}
