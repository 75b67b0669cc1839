package bufring

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// baseline collects the costs measured by the baseline sub-benchmarks of one
// process (keyed by GOMAXPROCS too, for -cpu lists) so that the bufring
// sub-benchmark can report its speed-up against them. Every sub-benchmark
// uses b.Loop, so its body runs once per -count repetition and each
// repetition adds one figure; report compares against their median, so one
// disturbed baseline repetition does not skew every ratio.
type baseline map[string][]float64

func (bl baseline) key(name, unit string) string {
	return fmt.Sprintf("%s/%s/%d", name, unit, runtime.GOMAXPROCS(0))
}

// record adds a baseline cost (lower is better) in unit.
func (bl baseline) record(name, unit string, cost float64) {
	k := bl.key(name, unit)
	bl[k] = append(bl[k], cost)
}

// report adds the metric "x-<name><suffix>": the median baseline cost in
// unit divided by ours (above 1 means bufring is faster).
func (bl baseline) report(b *testing.B, name, unit, suffix string, ours float64) {
	base := slices.Clone(bl[bl.key(name, unit)])
	if len(base) == 0 || ours <= 0 {
		return
	}
	slices.Sort(base)
	b.ReportMetric(base[len(base)/2]/ours, "x-"+name+suffix)
}

func nsPerOp(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(b.N) }

// cpuTime returns the CPU time the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type frameBuf [2048]byte

// BenchmarkCachePair measures one Get and one Put on a worker's local cache,
// against sync.Pool and a buffered-channel pool doing the same in the same
// run.
func BenchmarkCachePair(b *testing.B) {
	bl := baseline{}
	b.Run("impl=syncpool", func(b *testing.B) {
		pool := sync.Pool{New: func() any { return new(frameBuf) }}
		pool.Put(pool.Get())
		b.ReportAllocs()
		for b.Loop() {
			f := pool.Get().(*frameBuf)
			pool.Put(f)
		}
		bl.record("syncpool", "ns/op", nsPerOp(b))
	})
	b.Run("impl=chanpool", func(b *testing.B) {
		ch := make(chan uint64, 4096)
		for i := range 4096 {
			ch <- uint64(i) * 2048
		}
		b.ReportAllocs()
		for b.Loop() {
			ch <- <-ch
		}
		bl.record("chanpool", "ns/op", nsPerOp(b))
	})
	b.Run("impl=bufring", func(b *testing.B) {
		p, err := NewFramePool(FrameConfig{Frames: 4096, FrameSize: 2048})
		if err != nil {
			b.Fatal(err)
		}
		c := p.NewCache("bench")
		b.ReportAllocs()
		for b.Loop() {
			a, ok := c.Get()
			if !ok {
				b.Fatal("pool empty")
			}
			c.Put(a)
		}
		bl.report(b, "syncpool", "ns/op", "", nsPerOp(b))
		bl.report(b, "chanpool", "ns/op", "", nsPerOp(b))
	})
}

// BenchmarkSharedRingContended has two goroutines each take a batch of 32
// frames from a shared pool of 4096 and give them back, as two workers
// refilling and flushing their caches do. The ring has 8192 slots, as
// FramePool sizes its shared ring (twice the frames). The baseline moves the same frames
// through a buffered channel one by one. The benchmark goroutine runs the
// b.Loop and a second goroutine cycles alongside until it ends, so ns/op is
// per batch of one goroutine; frames/s (frames taken and returned per second
// by both) and cpu-ns/frame (process CPU time per frame, less disturbed by
// other processes than wall time) are the figures to compare.
func BenchmarkSharedRingContended(b *testing.B) {
	const frames, batch = 4096, 32
	bl := baseline{}
	run := func(b *testing.B, cycle func(buf []uint64)) (perSec, cpuPerFrame float64) {
		b.ReportAllocs()
		var stop atomic.Bool
		var helper atomic.Int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]uint64, batch)
			n := int64(0)
			for !stop.Load() {
				cycle(buf)
				n++
			}
			helper.Store(n)
		}()
		buf := make([]uint64, batch)
		start, cpu0 := time.Now(), cpuTime()
		var n int64
		for b.Loop() {
			cycle(buf)
			n++
		}
		stop.Store(true)
		wg.Wait()
		wall, cpu := time.Since(start), cpuTime()-cpu0
		moved := float64((n + helper.Load()) * batch)
		perSec, cpuPerFrame = moved/wall.Seconds(), float64(cpu.Nanoseconds())/moved
		b.ReportMetric(perSec, "frames/s")
		b.ReportMetric(cpuPerFrame, "cpu-ns/frame")
		return perSec, cpuPerFrame
	}
	b.Run("impl=chanpool", func(b *testing.B) {
		ch := make(chan uint64, frames)
		for i := range frames {
			ch <- uint64(i) * 2048
		}
		perSec, cpu := run(b, func(buf []uint64) {
			for i := range buf {
				buf[i] = <-ch
			}
			for _, a := range buf {
				ch <- a
			}
		})
		bl.record("chanpool", "s/frame", 1/perSec)
		bl.record("chanpool", "cpu-ns/frame", cpu)
	})
	b.Run("impl=bufring", func(b *testing.B) {
		r, _ := NewRing(2 * frames)
		for i := range frames {
			r.Push(uint64(i) * 2048)
		}
		perSec, cpu := run(b, func(buf []uint64) {
			n := 0
			for n < len(buf) {
				n += r.PopBatch(buf[n:])
			}
			for k := 0; k < len(buf); {
				k += r.PushBatch(buf[k:])
			}
		})
		bl.report(b, "chanpool", "s/frame", "", 1/perSec)
		bl.report(b, "chanpool", "cpu-ns/frame", "-cpu", cpu)
	})
}

// BenchmarkBytePair is BenchmarkCachePair for byte buffers: Get(1500) and Put
// on a ByteCache against a sync.Pool of *[]byte.
func BenchmarkBytePair(b *testing.B) {
	bl := baseline{}
	b.Run("impl=syncpool", func(b *testing.B) {
		pool := sync.Pool{New: func() any { s := make([]byte, 2048); return &s }}
		pool.Put(pool.Get())
		b.ReportAllocs()
		for b.Loop() {
			s := pool.Get().(*[]byte)
			(*s)[0] = 1
			pool.Put(s)
		}
		bl.record("syncpool", "ns/op", nsPerOp(b))
	})
	b.Run("impl=bufring", func(b *testing.B) {
		p, _ := NewBytePool(ByteConfig{})
		c := p.NewCache("bench")
		c.Put(c.Get(1500))
		b.ReportAllocs()
		for b.Loop() {
			s := c.Get(1500)
			s[0] = 1
			c.Put(s)
		}
		bl.report(b, "syncpool", "ns/op", "", nsPerOp(b))
	})
}
