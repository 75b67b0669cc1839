package bpf

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/privtest"
)

// BenchmarkLiveFrames measures the live-frames generator alone: 64-byte
// frames from the client peer into the engine veth, whose receiving side
// is an XDP_DROP program (the cheapest sink) or GRO with the kernel stack
// behind it (the frames are for the engine's .1, which the kernel does not
// own, so IP input drops them). One op is one frame.
//
// impl=baseline is the two-instruction XDP_TX program MACHINE-NOTES
// measured; impl=xdpnet is gen.c (per-CPU frame counter and config lookup),
// and with flows=16 it also rewrites the source port and checksum per frame.
// Metrics: pps, cpu-ns/frame (user+system time of the sending thread, which
// also runs the receiving veth's NAPI work), and ratio (pps against the
// baseline of the same sink in the same run).
func BenchmarkLiveFrames(b *testing.B) {
	for _, sink := range []string{"xdp-drop", "gro"} {
		b.Run("sink="+sink, func(b *testing.B) {
			privtest.RequireRoot(b)
			l := labtest.New(b, lab.Options{EngineGRO: sink == "gro"})
			link := l.ClientLink
			if sink == "xdp-drop" {
				var d io.Closer
				err := l.Engine.Do(func() error {
					var err error
					d, err = AttachDrop(link.Index, ModeNative)
					return err
				})
				privtest.SkipIfNotSupported(b, err)
				defer d.Close()
			}
			frame := mustUDP(b, link, link.PeerV4()[0], link.EngineV4, 64)
			var baseline float64
			for _, impl := range []struct {
				name  string
				flows int
			}{{"baseline", 0}, {"xdpnet", 1}, {"xdpnet-flows=16", 16}} {
				b.Run("impl="+impl.name, func(b *testing.B) {
					var send func(n uint64) (uint64, error)
					if impl.name == "baseline" {
						p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
							Type: ebpf.XDP, License: "Dual BSD/GPL",
							Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 3 /* XDP_TX */), asm.Return()},
						})
						if err != nil {
							b.Fatal(err)
						}
						defer p.Close()
						send = func(n uint64) (uint64, error) {
							_, err := p.Run(&ebpf.RunOptions{Data: frame, Repeat: uint32(n), Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES,
								Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(link.PeerIndex)}})
							return n, err
						}
					} else {
						g, err := NewGenerator(GeneratorOptions{Flows: impl.flows, Batch: 1 << 30})
						if err != nil {
							b.Fatal(err)
						}
						defer g.Close()
						send = func(n uint64) (uint64, error) { return g.Run(context.Background(), frame, link.PeerIndex, n) }
					}
					var (
						elapsed time.Duration
						cpu     time.Duration
					)
					err := l.Client.Do(func() error {
						var r0, r1 unix.Rusage
						unix.Getrusage(unix.RUSAGE_THREAD, &r0)
						b.ResetTimer()
						start := time.Now()
						_, err := send(uint64(b.N))
						elapsed = time.Since(start)
						b.StopTimer()
						unix.Getrusage(unix.RUSAGE_THREAD, &r1)
						cpu = time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
						return err
					})
					privtest.SkipIfNotSupported(b, err)
					pps := float64(b.N) / elapsed.Seconds()
					b.ReportMetric(pps, "pps")
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/frame")
					if impl.name == "baseline" {
						baseline = pps
					} else if baseline > 0 {
						b.ReportMetric(pps/baseline, "ratio")
					}
				})
			}
		})
	}
}
