package bufring

import (
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// baseline remembers the cost per op of the baseline sub-benchmarks of one
// run (per GOMAXPROCS, for -cpu lists) so that the bufring sub-benchmark can
// report its speed-up against them.
type baseline map[string]float64

func (bl baseline) key(name string) string {
	return fmt.Sprintf("%s/%d", name, runtime.GOMAXPROCS(0))
}

func (bl baseline) record(b *testing.B, name string, cpu time.Duration) {
	bl[bl.key(name)] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	if cpu > 0 {
		bl[bl.key(name)+"/cpu"] = float64(cpu.Nanoseconds()) / float64(b.N)
	}
}

// report adds "x-<name>" metrics, baseline ns/op divided by ours (above 1
// means bufring is faster), and with cpu > 0 also "x-<name>-cpu" from CPU
// time, which is less disturbed by other processes on a shared machine.
func (bl baseline) report(b *testing.B, cpu time.Duration, names ...string) {
	ours := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	for _, n := range names {
		if base, ok := bl[bl.key(n)]; ok && ours > 0 {
			b.ReportMetric(base/ours, "x-"+n)
		}
		if base, ok := bl[bl.key(n)+"/cpu"]; ok && cpu > 0 {
			b.ReportMetric(base/(float64(cpu.Nanoseconds())/float64(b.N)), "x-"+n+"-cpu")
		}
	}
}

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
		bl.record(b, "syncpool", 0)
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
		bl.record(b, "chanpool", 0)
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
		bl.report(b, 0, "syncpool", "chanpool")
	})
}

// BenchmarkSharedRingContended has two goroutines each take a batch of 32
// frames from the shared pool and give them back, as two workers refilling
// and flushing their caches do. One op is one batch taken and returned by one
// goroutine (64 frame moves). The baseline is a buffered channel of frames.
func BenchmarkSharedRingContended(b *testing.B) {
	const frames, batch, workers = 4096, 32, 2
	bl := baseline{}
	var cpu time.Duration // CPU time of the last run
	run := func(b *testing.B, cycle func(buf []uint64)) {
		b.ReportAllocs()
		var wg sync.WaitGroup
		per := b.N / workers
		b.ResetTimer()
		start := cpuTime()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]uint64, batch)
				for range per {
					cycle(buf)
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		cpu = cpuTime() - start
		b.ReportMetric(float64(per*workers*batch)/b.Elapsed().Seconds(), "frames/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(per*workers*batch), "cpu-ns/frame")
	}
	b.Run("impl=chanpool", func(b *testing.B) {
		ch := make(chan uint64, frames)
		for i := range frames {
			ch <- uint64(i) * 2048
		}
		run(b, func(buf []uint64) {
			for i := range buf {
				buf[i] = <-ch
			}
			for _, a := range buf {
				ch <- a
			}
		})
		bl.record(b, "chanpool", cpu)
	})
	b.Run("impl=bufring", func(b *testing.B) {
		r, _ := NewRing(frames)
		for i := range frames {
			r.Push(uint64(i) * 2048)
		}
		run(b, func(buf []uint64) {
			n := 0
			for n < len(buf) {
				n += r.PopBatch(buf[n:])
			}
			for k := 0; k < len(buf); {
				k += r.PushBatch(buf[k:])
			}
		})
		bl.report(b, cpu, "chanpool")
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
		bl.record(b, "syncpool", 0)
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
		bl.report(b, 0, "syncpool")
	})
}
