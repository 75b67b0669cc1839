package stack_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	gvxdp "gvisor.dev/gvisor/pkg/tcpip/link/xdp"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/stack"
)

// The benchmarks compare three servers on the same lab topology (one veth
// pair, 1500 MTU, kernel peer's TX checksum offload off):
//
//	impl=kernel      the engine namespace's kernel TCP (a Go server on .254)
//	impl=gvisor-xdp  gVisor netstack on gVisor's link/xdp endpoint (the baseline)
//	impl=xdpnet      gVisor netstack on this package's Endpoint
//
// Clients run as separate processes in the client namespace (iperf3, or
// this test binary re-executed as a Go client), so the process CPU measured
// around a run is the engine's alone. They run in that order, so the xdpnet
// sub-benchmark reports its ratios to the baselines measured in the same run.

// benchEnv is a server side under test.
type benchEnv struct {
	l      *lab.Lab
	lk     lab.Link
	addr   netip.Addr
	listen func(netip.AddrPort) (net.Listener, error)
	close  func()
	stats  func() string
	// txFrames is the endpoint's TX frames so far; nil where there is
	// no Endpoint.
	txFrames func() uint64
}

const benchClients = 16 // client addresses, so connection-rate runs do not run out of ports

func newBenchEnv(b *testing.B, impl string) *benchEnv {
	b.Helper()
	lo := lab.Options{Clients: benchClients, EngineKernelAddrs: impl == "kernel"}
	switch impl {
	case "kernel":
		l := labtest.New(b, lo)
		return &benchEnv{
			l: l, lk: l.ClientLink, addr: l.ClientLink.KernelV4,
			listen: func(ap netip.AddrPort) (ln net.Listener, err error) {
				err = l.Engine.Do(func() (err error) { ln, err = net.Listen("tcp", ap.String()); return err })
				return ln, err
			},
			close: func() {}, stats: func() string { return "" },
		}
	case "xdpnet", "xdpnet-softcsum":
		var tune []func(*nic.Config)
		if impl == "xdpnet-softcsum" {
			// Checksums computed in Go, as without AF_XDP TX metadata.
			tune = append(tune, func(c *nic.Config) { c.NoTxChecksum = true })
		}
		var eo stack.EndpointOptions
		if path := os.Getenv("XDPNET_BENCH_PCAP"); path != "" {
			// Debugging aid: every frame of the run, for a packet trace.
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { f.Close() })
			if eo.Capture, err = stack.NewCapture(f, 128); err != nil {
				b.Fatal(err)
			}
		}
		e := newLabEngine(b, lo, eo, stack.Options{}, tune...)
		return &benchEnv{
			l: e.l, lk: e.lk, addr: e.lk.EngineV4,
			listen:   func(ap netip.AddrPort) (net.Listener, error) { return e.s.ListenTCP(ap) },
			close:    func() {},
			txFrames: func() uint64 { return stack.Total(e.ep.Stats()).TXFrames },
			stats: func() string {
				tcp := e.s.Netstack().Stats().TCP
				var ps []string
				for _, p := range e.ports {
					st, _ := p.Stats()
					ps = append(ps, fmt.Sprintf("%+v", st))
				}
				return fmt.Sprintf("endpoint %+v; ports %v; netstack retransmits %d", stack.Total(e.ep.Stats()), ps, tcp.Retransmits.Value())
			},
		}
	case "gvisor-xdp":
		return newGVisorXDPEnv(b, lo)
	}
	b.Fatalf("unknown impl %q", impl)
	return nil
}

// newGVisorXDPEnv puts netstack on gVisor's own AF_XDP endpoint, steered by
// the same XDP program to its socket on queue 0. Its cleanup ends the
// endpoint's receive goroutine before it closes the socket (gvisorXDPLink).
func newGVisorXDPEnv(tb testing.TB, lo lab.Options) *benchEnv {
	l := labtest.New(tb, lo)
	lk := l.ClientLink
	var steer *bpf.Steering
	var link *gvisorXDPLink
	fd := -1
	s, err := stack.New(stack.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	err = l.Engine.Do(func() error {
		var err error
		if steer, err = bpf.LoadSteering(bpf.SteeringOptions{Queues: 1}); err != nil {
			return err
		}
		if err := errors.Join(steer.AddAddr(lk.EngineV4), steer.AddAddr(lk.EngineV6), steer.Attach(lk.Index, bpf.ModeNative)); err != nil {
			return err
		}
		// SOCK_CLOEXEC: the clients this process forks must not hold it.
		if fd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return fmt.Errorf("af_xdp socket: %w", err)
		}
		if link, err = newGVisorXDPLink(fd, lk.MAC, lk.Index); err != nil {
			return err
		}
		if err := steer.SetSocket(0, fd); err != nil {
			return err
		}
		n, err := s.AddNIC(link, stack.NICOptions{Name: "gvisor-xdp"})
		if err != nil {
			return err
		}
		return errors.Join(n.AddAddress(netip.PrefixFrom(lk.EngineV4, 24)), n.AddAddress(netip.PrefixFrom(lk.EngineV6, 64)))
	})
	cleanup := func() {
		s.Close()
		switch {
		case link != nil:
			if err := link.close(testutil.Timeout); err != nil {
				tb.Error(err)
			}
		case fd >= 0:
			unix.Close(fd)
		}
		if steer != nil {
			steer.Close()
		}
	}
	tb.Cleanup(cleanup)
	if err != nil {
		privtest.SkipIfNotSupported(tb, err)
	}
	return &benchEnv{
		l: l, lk: lk, addr: lk.EngineV4,
		listen: func(ap netip.AddrPort) (net.Listener, error) { return s.ListenTCP(ap) },
		close:  func() {},
		stats: func() string {
			return fmt.Sprintf("netstack retransmits %d", s.Netstack().Stats().TCP.Retransmits.Value())
		},
	}
}

// gvisorXDPLink is gVisor's link/xdp endpoint with a way to end its receive
// goroutine, which the endpoint itself lacks: its Attach(nil), which the
// stack calls on Close, deadlocks (it calls IsAttached, which read-locks the
// mutex Attach holds), so Attach(nil) and Wait do nothing here; and its
// dispatch loop takes a write to its stop eventfd as "go on polling". The
// loop ends only when poll(2) reports POLLHUP or POLLERR on the socket's
// descriptor, which it looks up by number on every poll.
//
// Closing the socket under the running loop is what hung
// BenchmarkTCPBulk's Go-client sub-benchmarks: the loop spun on POLLNVAL
// until the number was reused, then blocked in poll on the file that took
// it, holding a reference that kept it open. When that file was the write
// end of a later exec's status pipe, os/exec's Start never read EOF (the
// client ran, exited and stayed a zombie); when it was a client's stdout
// pipe, Wait outlived WaitDelay. Which file took the number depended on how
// many descriptors the steering program opened.
type gvisorXDPLink struct {
	gstack.LinkEndpoint
	fd   int           // the AF_XDP socket the endpoint polls; closed by close
	efd  int           // the endpoint's stop eventfd, which gVisor never closes
	done chan struct{} // closed by the endpoint's ClosedFunc when the loop returns
}

func newGVisorXDPLink(fd int, mac net.HardwareAddr, ifindex int) (*gvisorXDPLink, error) {
	l := &gvisorXDPLink{fd: fd, efd: -1, done: make(chan struct{})}
	ep, err := gvxdp.New(&gvxdp.Options{
		FD: fd, Address: tcpip.LinkAddress(mac), InterfaceIndex: ifindex, Bind: true, GRO: true,
		ClosedFunc: func(tcpip.Error) { close(l.done) },
	})
	if err != nil {
		return nil, err
	}
	l.LinkEndpoint = ep
	// The eventfd is unexported (endpoint.stopFD.EFD); reading its number is
	// the only way to wake the loop from a poll on an idle socket.
	v := reflect.ValueOf(ep)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if f := v.FieldByName("stopFD"); f.IsValid() {
		if f = f.FieldByName("EFD"); f.IsValid() && f.CanInt() {
			l.efd = int(f.Int())
			return l, nil
		}
	}
	// Not stopping the loop would bring the hang back: refuse to run.
	return nil, fmt.Errorf("gvisor link/xdp: %T has no stopFD.EFD any more: update gvisorXDPLink", ep)
}

func (l *gvisorXDPLink) Attach(d gstack.NetworkDispatcher) {
	if d != nil {
		l.LinkEndpoint.Attach(d)
	}
}

func (*gvisorXDPLink) Wait() {}

// close ends the receive goroutine, waiting for it up to timeout, then
// closes the socket and the eventfd. It puts the read end of a pipe without
// writer, which polls POLLHUP, at the socket's number (dup3 replaces the
// socket there in one step, so the number is never free while the loop may
// poll it) and wakes the loop through its eventfd. If the loop has not ended
// by the timeout, both numbers are left open: the loop then polls a hung-up
// pipe, never a file opened later.
func (l *gvisorXDPLink) close(timeout time.Duration) error {
	if l.IsAttached() {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return fmt.Errorf("gvisor-xdp close: pipe: %w", err)
		}
		unix.Close(p[1])
		err := unix.Dup3(p[0], l.fd, unix.O_CLOEXEC)
		unix.Close(p[0])
		if err != nil {
			return fmt.Errorf("gvisor-xdp close: dup3 over the socket: %w", err)
		}
		if _, err := unix.Write(l.efd, binary.NativeEndian.AppendUint64(nil, 1)); err != nil {
			return fmt.Errorf("gvisor-xdp close: wake the receive loop: %w", err)
		}
		select {
		case <-l.done:
		case <-time.After(timeout):
			return fmt.Errorf("gvisor-xdp close: receive goroutine still polling after %v; descriptors %d and %d left open", timeout, l.fd, l.efd)
		}
	}
	return errors.Join(unix.Close(l.fd), unix.Close(l.efd))
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// results keeps each impl's figures of the current run for the ratios.
var results sync.Map // "bench/impl" -> float64

func recordAndCompare(b *testing.B, bench, impl string, v float64, unit string) {
	results.Store(bench+"/"+impl, v)
	if impl != "xdpnet" {
		return
	}
	if g, ok := results.Load(bench + "/gvisor-xdp"); ok && g.(float64) > 0 {
		b.ReportMetric(v/g.(float64), "x-gvisor-xdp")
	}
	if k, ok := results.Load(bench + "/kernel"); ok && k.(float64) > 0 {
		b.ReportMetric(v/k.(float64), "x-kernel")
	}
}

var benchImpls = func() []string {
	// XDPNET_BENCH_IMPLS (comma-separated) runs a subset, e.g. one
	// server alone under the CPU profiler.
	if s := os.Getenv("XDPNET_BENCH_IMPLS"); s != "" {
		return strings.Split(s, ",")
	}
	return []string{"kernel", "gvisor-xdp", "xdpnet"}
}()

// testCount is -test.count.
func testCount() int {
	if f := flag.Lookup("test.count"); f != nil {
		if n, err := strconv.Atoi(f.Value.String()); err == nil && n > 0 {
			return n
		}
	}
	return 1
}

func benchSeconds() int {
	if s, err := strconv.Atoi(os.Getenv("XDPNET_BENCH_SECONDS")); err == nil && s > 0 {
		return s
	}
	return 5
}

// BenchmarkTCPBulk: one iperf3 stream from the client namespace into a sink
// (client=iperf3), and the same with a Go client (client=go).
func BenchmarkTCPBulk(b *testing.B) {
	privtest.RequireRoot(b)
	secs := benchSeconds()
	for _, client := range []string{"iperf3", "go"} {
		for _, impl := range benchImpls {
			b.Run("client="+client+"/impl="+impl, func(b *testing.B) {
				env := newBenchEnv(b, impl)
				ln, err := env.listen(netip.AddrPortFrom(env.addr, 5201))
				if err != nil {
					b.Fatal(err)
				}
				var srv *iperfServer
				var sink *sinkServer
				if client == "iperf3" {
					srv = newIperfServer(ln)
				} else {
					sink = newSinkServer(ln)
				}
				var bits, wall float64
				var cpu time.Duration
				var retx int64
				b.ResetTimer()
				for range b.N {
					c0, t0 := cpuTime(), time.Now()
					var out []byte
					var err error
					if client == "iperf3" {
						out, err = runInNS(b, env.l.Client, time.Duration(secs+30)*time.Second,
							"iperf3", "-c", env.addr.String(), "-p", "5201", "-t", strconv.Itoa(secs), "-J")
					} else {
						out, err = runGoClient(b, env.l.Client, secs, goClient{Mode: "bulk", Dst: netip.AddrPortFrom(env.addr, 5201).String(), Seconds: secs})
					}
					wall += time.Since(t0).Seconds()
					cpu += cpuTime() - c0
					if err != nil {
						b.Fatalf("%v: %s", err, out)
					}
					if client == "iperf3" {
						var r struct {
							End struct {
								SumSent struct {
									Retransmits int64 `json:"retransmits"`
								} `json:"sum_sent"`
								SumReceived struct {
									BPS float64 `json:"bits_per_second"`
								} `json:"sum_received"`
							} `json:"end"`
						}
						if err := json.Unmarshal(out, &r); err != nil {
							b.Fatalf("iperf3 output: %v: %s", err, out)
						}
						bits += r.End.SumReceived.BPS
						retx += r.End.SumSent.Retransmits
					} else {
						var r goClientResult
						if err := json.Unmarshal(out, &r); err != nil {
							b.Fatalf("client output: %v: %s", err, out)
						}
						bits += 8 * float64(r.Bytes) / r.Seconds
					}
				}
				b.StopTimer()
				gbps := bits / float64(b.N) / 1e9
				b.ReportMetric(gbps, "Gbit/s")
				b.ReportMetric(cpu.Seconds()/wall, "engine-cores")
				b.ReportMetric(float64(retx)/float64(b.N), "client-retransmits")
				recordAndCompare(b, "bulk-"+client, impl, gbps, "Gbit/s")
				if srv != nil {
					if err := srv.Close(); err != nil {
						b.Error(err)
					}
				} else {
					sink.Close()
				}
				b.Logf("%s: %s", impl, env.stats())
			})
		}
	}
}

// BenchmarkTCPConnRate: connect, 1-byte echo, close, from 32 parallel Go
// clients in the client namespace spread over benchClients addresses.
//
// The three servers run side by side, each on its own lab, and their
// measured seconds are taken in turns of one second (kernel, gvisor-xdp,
// xdpnet, kernel, ...) after a warm-up turn each: on a shared machine the
// load drifts over seconds, and taking the servers' runs one after the other
// made the same-run ratio swing by 2x. The top-level benchmark measures one
// round of turns per -test.count, and each run of a sub-benchmark reports
// the next round's totals, so -count repeats the measurement, not its
// report. The servers idle (waiting for packets) while another one is
// measured.
func BenchmarkTCPConnRate(b *testing.B) {
	privtest.RequireRoot(b)
	secs := benchSeconds()
	type tally struct {
		conns, errs, seconds, wall, clientCPU float64
		cpu                                   time.Duration
		firstErr                              string
	}
	type server struct {
		env    *benchEnv
		dst    string
		srcs   []string
		rounds []tally
		// reported is the round the last sub-benchmark run reported, and
		// lastB that run's B: the testing package starts every -count
		// repetition on a new B and may call it several times.
		reported int
		lastB    *testing.B
	}
	rounds := testCount()
	servers := make([]*server, len(benchImpls))
	for i, impl := range benchImpls {
		env := newBenchEnv(b, impl)
		ln, err := env.listen(netip.AddrPortFrom(env.addr, 7))
		if err != nil {
			b.Fatal(err)
		}
		echoServe(b, ln)
		sv := &server{env: env, dst: netip.AddrPortFrom(env.addr, 7).String(), rounds: make([]tally, rounds), reported: -1}
		for _, a := range env.lk.PeerV4() {
			sv.srcs = append(sv.srcs, a.String())
		}
		servers[i] = sv
	}
	for turn := range rounds*secs + 1 {
		for i, sv := range servers {
			c0, t0 := cpuTime(), time.Now()
			out, err := runGoClient(b, sv.env.l.Client, 1, goClient{
				Mode: "connrate", Dst: sv.dst, Seconds: 1, Parallel: 32, Sources: sv.srcs,
			})
			wall, cpu := time.Since(t0).Seconds(), cpuTime()-c0
			if err != nil {
				b.Fatalf("%s: %v: %s", benchImpls[i], err, out)
			}
			var r goClientResult
			if err := json.Unmarshal(out, &r); err != nil {
				b.Fatalf("%s: client output: %v: %s", benchImpls[i], err, out)
			}
			if turn == 0 {
				continue // warm-up: neighbour resolution, first allocations
			}
			t := &sv.rounds[(turn-1)/secs]
			t.conns += float64(r.Count)
			t.errs += float64(r.Errors)
			t.seconds += r.Seconds
			t.wall += wall
			t.cpu += cpu
			t.clientCPU += r.CPUSeconds
			if t.firstErr == "" {
				t.firstErr = r.FirstError
			}
		}
	}
	for i, impl := range benchImpls {
		sv := servers[i]
		b.Run("impl="+impl, func(b *testing.B) {
			if b != sv.lastB {
				sv.lastB = b
				sv.reported = min(sv.reported+1, rounds-1)
			}
			t := sv.rounds[sv.reported]
			if t.errs > t.conns/100 {
				b.Errorf("%.0f failed connections of %.0f: %s", t.errs, t.conns+t.errs, t.firstErr)
			}
			if t.conns == 0 || t.seconds == 0 {
				b.Fatalf("no connection completed: %s", t.firstErr)
			}
			cps := t.conns / t.seconds
			b.ReportMetric(cps, "conn/s")
			b.ReportMetric(t.cpu.Seconds()/t.wall, "engine-cores")
			// CPU per connection moves less with the shared machine's
			// load than the rate does.
			b.ReportMetric(t.cpu.Seconds()/t.conns*1e6, "engine-us/conn")
			b.ReportMetric(t.clientCPU/t.conns*1e6, "client-us/conn")
			// Ratios within the round: its turns interleaved the servers.
			recordAndCompare(b, fmt.Sprintf("connrate-round%d", sv.reported), impl, cps, "conn/s")
			b.Logf("%s: %.0f connections in %d turns; %s", impl, t.conns, secs, sv.env.stats())
		})
	}
}

// BenchmarkTCPRequestResponse: 32 kept-alive connections from Go clients in
// the client namespace each send a 200-byte request and wait for its
// 200-byte echo, as HTTP/1.1 clients of a proxy do: the per-packet cost of
// the data path (frames, TX kicks, RX wakeups, netstack's segments) per
// exchange, for each of benchImpls, in one-second turns as
// BenchmarkTCPConnRate takes them. engine-us/req is the test process's CPU
// (the server side) per exchange, client-us/req the client process's
// (its kernel's receive processing included), frames/req the endpoint's TX
// frames.
func BenchmarkTCPRequestResponse(b *testing.B) {
	privtest.RequireRoot(b)
	secs := benchSeconds()
	impls := benchImpls
	type server struct {
		env                   *benchEnv
		dst                   string
		reqs, seconds, frames float64
		clientCPU             float64
		cpu                   time.Duration
		txFrames              func() uint64
	}
	servers := make([]*server, len(impls))
	for i, impl := range impls {
		env := newBenchEnv(b, impl)
		ln, err := env.listen(netip.AddrPortFrom(env.addr, 7))
		if err != nil {
			b.Fatal(err)
		}
		echoServe(b, ln)
		sv := &server{env: env, dst: netip.AddrPortFrom(env.addr, 7).String(), txFrames: env.txFrames}
		if sv.txFrames == nil {
			sv.txFrames = func() uint64 { return 0 }
		}
		servers[i] = sv
	}
	for turn := range b.N*secs + 1 {
		for i, sv := range servers {
			f0, c0 := sv.txFrames(), cpuTime()
			out, err := runGoClient(b, sv.env.l.Client, 1, goClient{Mode: "reqresp", Dst: sv.dst, Seconds: 1, Parallel: 32})
			cpu, frames := cpuTime()-c0, sv.txFrames()-f0
			if err != nil {
				b.Fatalf("%s: %v: %s", impls[i], err, out)
			}
			var r goClientResult
			if err := json.Unmarshal(out, &r); err != nil {
				b.Fatalf("%s: client output: %v: %s", impls[i], err, out)
			}
			if r.Errors > 0 {
				b.Fatalf("%s: %d clients failed: %s", impls[i], r.Errors, r.FirstError)
			}
			if turn == 0 {
				continue // warm-up
			}
			sv.reqs += float64(r.Count)
			sv.seconds += r.Seconds
			sv.cpu += cpu
			sv.frames += float64(frames)
			sv.clientCPU += r.CPUSeconds
		}
	}
	for i, impl := range impls {
		sv := servers[i]
		b.Run("impl="+impl, func(b *testing.B) {
			if sv.reqs == 0 {
				b.Fatal("no exchange completed")
			}
			b.ReportMetric(sv.reqs/sv.seconds, "req/s")
			b.ReportMetric(sv.cpu.Seconds()/sv.reqs*1e6, "engine-us/req")
			// The client's kernel processes the frames the engine sends.
			b.ReportMetric(sv.clientCPU/sv.reqs*1e6, "client-us/req")
			if sv.frames > 0 {
				b.ReportMetric(sv.frames/sv.reqs, "frames/req")
			}
			b.Logf("%s: %s", impl, sv.env.stats())
		})
	}
}

// sinkServer reads and discards every connection, counting bytes.
type sinkServer struct {
	l     net.Listener
	bytes atomic.Int64
	wg    sync.WaitGroup
}

func newSinkServer(l net.Listener) *sinkServer {
	s := &sinkServer{l: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					n, err := c.Read(buf)
					s.bytes.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *sinkServer) Close() { s.l.Close(); s.wg.Wait() }

// sourceServer writes to every connection it accepts until the peer goes.
type sourceServer struct {
	l  net.Listener
	wg sync.WaitGroup
}

func newSourceServer(l net.Listener) *sourceServer {
	s := &sourceServer{l: l}
	s.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			})
		}
	})
	return s
}

func (s *sourceServer) Close() { s.l.Close(); s.wg.Wait() }

// BenchmarkTCPDownload: one Go client in the client namespace reads from a
// netstack server that writes as fast as it can, so the stack's send path
// (GSO segments cut into frames) does the work: with the ports' TX checksum
// offload (impl=xdpnet) and with checksums summed in Go (xdpnet-softcsum),
// in turns, one per b.N round. engine-cpu-s/GB is the test process's CPU
// (the server side) per gigabyte received by the client.
func BenchmarkTCPDownload(b *testing.B) {
	privtest.RequireRoot(b)
	secs := benchSeconds()
	for _, impl := range []string{"xdpnet", "xdpnet-softcsum"} {
		b.Run("impl="+impl, func(b *testing.B) {
			env := newBenchEnv(b, impl)
			ln, err := env.listen(netip.AddrPortFrom(env.addr, 5201))
			if err != nil {
				b.Fatal(err)
			}
			src := newSourceServer(ln)
			defer src.Close()
			var bytes, secsRun float64
			var cpu time.Duration
			for range b.N {
				c0 := cpuTime()
				out, err := runGoClient(b, env.l.Client, secs, goClient{Mode: "download", Dst: netip.AddrPortFrom(env.addr, 5201).String(), Seconds: secs})
				cpu += cpuTime() - c0
				if err != nil {
					b.Fatalf("%v: %s", err, out)
				}
				var r goClientResult
				if err := json.Unmarshal(out, &r); err != nil {
					b.Fatalf("client output: %v: %s", err, out)
				}
				bytes += float64(r.Bytes)
				secsRun += r.Seconds
			}
			b.ReportMetric(8*bytes/secsRun/1e9, "Gbit/s")
			b.ReportMetric(cpu.Seconds()/(bytes/1e9), "engine-cpu-s/GB")
			b.Logf("%s: %s", impl, env.stats())
		})
	}
}

// runInNS runs a command in ns, bounded by timeout (killed by PID), and
// returns its standard output.
func runInNS(b testing.TB, ns *lab.NS, timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := ns.Start(cmd); err != nil {
		return nil, err
	}
	if err := cmd.Wait(); err != nil {
		return append(out.Bytes(), errb.Bytes()...), fmt.Errorf("%s: %w", name, err)
	}
	return out.Bytes(), nil
}

// goClient configures this test binary re-executed as a load client (see
// TestMain).
type goClient struct {
	Mode     string   // "bulk", "download", "reqresp" or "connrate"
	Dst      string   // server address
	Seconds  int      // run time
	Parallel int      // connrate: concurrent loops
	Sources  []string // connrate: local addresses to spread over
}

type goClientResult struct {
	Count, Errors int64
	Bytes         int64
	Seconds       float64
	CPUSeconds    float64 // the client process's user+system CPU
	FirstError    string
}

const goClientEnv = "XDPNET_STACK_GO_CLIENT"

func runGoClient(b testing.TB, ns *lab.NS, secs int, cfg goClient) ([]byte, error) {
	j, _ := json.Marshal(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+60)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), goClientEnv+"="+string(j))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := ns.Start(cmd); err != nil {
		return nil, err
	}
	if err := cmd.Wait(); err != nil {
		// Seen intermittently after connection-rate runs: the client printed
		// its complete result and returned, yet its stdout stayed open past
		// WaitDelay. The figure is the client's own and complete; keep it
		// and say so.
		var r goClientResult
		if errors.Is(err, exec.ErrWaitDelay) && json.Unmarshal(out.Bytes(), &r) == nil && r.Seconds > 0 {
			b.Logf("go client: %v after printing its result; result kept", err)
			return out.Bytes(), nil
		}
		return append(out.Bytes(), errb.Bytes()...), fmt.Errorf("go client: %w", err)
	}
	return out.Bytes(), nil
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(goClientEnv); cfg != "" {
		os.Exit(goClientMain(cfg))
	}
	os.Exit(m.Run())
}

// goClientMain runs a load client and prints a goClientResult.
func goClientMain(cfgJSON string) int {
	var cfg goClient
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var r goClientResult
	deadline := time.Now().Add(time.Duration(cfg.Seconds) * time.Second)
	start := time.Now()
	switch cfg.Mode {
	case "bulk":
		c, err := net.DialTimeout("tcp", cfg.Dst, 10*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = c.SetDeadline(deadline.Add(30 * time.Second))
		buf := make([]byte, 128<<10)
		for time.Now().Before(deadline) {
			n, err := c.Write(buf)
			r.Bytes += int64(n)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		c.Close()
	case "download":
		c, err := net.DialTimeout("tcp", cfg.Dst, 10*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = c.SetReadDeadline(deadline)
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			r.Bytes += int64(n)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		c.Close()
	case "reqresp":
		var count, errs atomic.Int64
		var first atomic.Value
		var wg sync.WaitGroup
		for range cfg.Parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", cfg.Dst, 5*time.Second)
				if err != nil {
					errs.Add(1)
					first.CompareAndSwap(nil, err.Error())
					return
				}
				defer c.Close()
				_ = c.SetDeadline(deadline.Add(5 * time.Second))
				req, resp := make([]byte, 200), make([]byte, 200)
				for time.Now().Before(deadline) {
					if _, err := c.Write(req); err != nil {
						errs.Add(1)
						first.CompareAndSwap(nil, err.Error())
						return
					}
					if _, err := io.ReadFull(c, resp); err != nil {
						errs.Add(1)
						first.CompareAndSwap(nil, err.Error())
						return
					}
					count.Add(1)
				}
			}()
		}
		wg.Wait()
		r.Count, r.Errors = count.Load(), errs.Load()
		if f, ok := first.Load().(string); ok {
			r.FirstError = f
		}
	case "connrate":
		var count, errs atomic.Int64
		var first atomic.Value
		var wg sync.WaitGroup
		for i := range cfg.Parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var d net.Dialer
				d.Timeout = 5 * time.Second
				if len(cfg.Sources) > 0 {
					d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.Sources[i%len(cfg.Sources)])}
				}
				one := []byte{1}
				for time.Now().Before(deadline) {
					err := func() error {
						c, err := d.Dial("tcp", cfg.Dst)
						if err != nil {
							return err
						}
						defer c.Close()
						_ = c.SetDeadline(time.Now().Add(5 * time.Second))
						if _, err := c.Write(one); err != nil {
							return err
						}
						_, err = io.ReadFull(c, one)
						return err
					}()
					if err != nil {
						errs.Add(1)
						first.CompareAndSwap(nil, err.Error())
						continue
					}
					count.Add(1)
				}
			}()
		}
		wg.Wait()
		r.Count, r.Errors = count.Load(), errs.Load()
		if f, ok := first.Load().(string); ok {
			r.FirstError = f
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", cfg.Mode)
		return 2
	}
	r.Seconds = time.Since(start).Seconds()
	r.CPUSeconds = cpuTime().Seconds()
	_ = json.NewEncoder(os.Stdout).Encode(r)
	return 0
}
