package engine_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/engine/netapi"
	"github.com/xdpnet/xdpnet/internal/privtest"
)

// BenchmarkProxy sends b.N GETs (1 KiB responses) from Go net/http clients
// in the lab's client namespace through the engine to two HTTP/3 origins:
// impl=xdpnet on the AF_XDP netstack, impl=baseline through the same proxy
// logic on the kernel's stack (net/http frontend, quic-go HTTP/3 to the same
// origins), same topology, same run. Variants of xdpnet, for same-run
// A/B of the engine's choices: busypoll50us spins 50 µs on each RX ring
// before sleeping; sharedsocket gives each worker one unconnected backend
// UDP socket instead of one connected socket per server; hashworkers
// spreads client connections over workers by address hash instead of by
// the RX queue they arrived on. Metrics: req/s, CPU time of the process per
// request, p50 and p99 latency, backend connections opened per 1,000
// requests after warm-up, and the reuse pool's reuse ratio.
func BenchmarkProxy(b *testing.B) {
	for _, conns := range []int{16} {
		for _, impl := range []struct {
			name, stack string
			opts        enginelab.Options
		}{
			{"xdpnet", "xdp", enginelab.Options{}},
			{"xdpnet-busypoll50us", "xdp", enginelab.Options{BusyPoll: 50 * time.Microsecond}},
			{"xdpnet-sharedsocket", "xdp", enginelab.Options{WrapNet: func(n netapi.Net) netapi.Net { return sharedSocketNet{n.(*dataplane.Plane)} }}},
			{"xdpnet-hashworkers", "xdp", enginelab.Options{WrapNet: func(n netapi.Net) netapi.Net { return hashWorkersNet{sharedSocketNet{n.(*dataplane.Plane)}} }}},
			{"baseline", "kernel", enginelab.Options{}},
		} {
			b.Run(fmt.Sprintf("conns=%d/impl=%s", conns, impl.name), func(b *testing.B) {
				opts := impl.opts
				opts.Stack = impl.stack
				benchProxy(b, opts, conns)
			})
		}
	}
}

// sharedSocketNet is the data plane without DialBackend: the engine opens one
// unconnected backend UDP socket per worker and address family.
type sharedSocketNet struct{ x *dataplane.Plane }

func (n sharedSocketNet) Name() string                                     { return n.x.Name() }
func (n sharedSocketNet) Workers() int                                     { return n.x.Workers() }
func (n sharedSocketNet) ListenTCP(a netip.AddrPort) (net.Listener, error) { return n.x.ListenTCP(a) }
func (n sharedSocketNet) ListenUDP(a netip.AddrPort) (net.PacketConn, error) {
	return n.x.ListenUDP(a)
}
func (n sharedSocketNet) BackendPacketConn(w int, a netip.Addr) (net.PacketConn, error) {
	return n.x.BackendPacketConn(w, a)
}
func (n sharedSocketNet) DialTCP(ctx context.Context, w int, a netip.AddrPort) (net.Conn, error) {
	return n.x.DialTCP(ctx, w, a)
}
func (n sharedSocketNet) Stats() *dataplane.Stats                   { return n.x.Stats() }
func (n sharedSocketNet) Close() error                              { return n.x.Close() }
func (n sharedSocketNet) QUICPacketSize(dst netip.Addr) uint16      { return n.x.QUICPacketSize(dst) }
func (n sharedSocketNet) WorkerFor(l, r netip.AddrPort) (int, bool) { return n.x.WorkerFor(l, r) }

// hashWorkersNet is the data plane without WorkerFor: client connections go to
// workers by a hash of the client's address.
type hashWorkersNet struct{ sharedSocketNet }

func (n hashWorkersNet) WorkerFor(netip.AddrPort, netip.AddrPort) (int, bool) { return 0, false }
func (n hashWorkersNet) DialBackend(w int, a netip.AddrPort) (net.Conn, error) {
	return n.x.DialBackend(w, a)
}

func benchProxy(b *testing.B, opts enginelab.Options, conns int) {
	privtest.RequireRoot(b)
	opts.Admin = "127.0.0.1:0"
	env, err := enginelab.Start(opts)
	privtest.SkipIfNotSupported(b, err)
	defer env.Close()
	c := env.HTTPClient(conns, false)
	defer c.CloseIdleConnections()
	url := env.FrontendURL("http") + "/bytes/1024"

	// Warm-up: every client connection and backend pool is open.
	if failed, _ := load(c, url, 20*conns, conns, nil); failed > 0 {
		b.Fatalf("warm-up: %d requests failed", failed)
	}
	before := env.Engine.Stats()
	lat := make([][]time.Duration, conns)
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	failed, err := load(c, url, b.N, conns, lat)
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	b.StopTimer()
	if failed > 0 {
		b.Fatalf("%d of %d requests failed: %v", failed, b.N, err)
	}
	after := env.Engine.Stats()
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	// CPU time of the whole process (clients, engine, origins) per
	// request: steadier than req/s on a shared machine, where the
	// latency-bound rate moves with the other processes' load.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/req")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[(len(all)-1)*99/100].Microseconds())/1000, "p99-ms")
	opened := after.BackendConnsOpened - before.BackendConnsOpened
	served := after.BackendRequests - before.BackendRequests
	b.ReportMetric(1000*opened/max(served, 1), "conns/1000req")
	attaches := float64(after.Reuse.Attaches - before.Reuse.Attaches)
	misses := float64(after.Reuse.Misses - before.Reuse.Misses)
	b.ReportMetric(100*(attaches-misses)/max(attaches, 1), "reuse-%")
}

// processCPU is the user plus system CPU time the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// load runs n GETs over conns workers; lat[i], when lat is not nil,
// receives worker i's latencies.
func load(c *http.Client, url string, n, conns int, lat [][]time.Duration) (int, error) {
	var next atomic.Int64
	var failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for w := range conns {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err)
					continue
				}
				if lat != nil {
					lat[w] = append(lat[w], time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	err, _ := first.Load().(error)
	return int(failed.Load()), err
}
