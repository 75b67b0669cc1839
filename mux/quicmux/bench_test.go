package quicmux

import (
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xdpnet/xdpnet/mux/internal/testenv"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// The benchmarks compare, in one run and on one machine:
//
//	impl=baseline        quic-go on kernel UDP sockets (loopback), no mux
//	impl=xdpnet          quicmux.Conn on the engine's netstack (two netstacks
//	                     joined in memory by stacktest)
//	impl=mux-kernel      quicmux.Conn on kernel UDP: the cost of mux alone
//	impl=quicgo-netstack quic-go on the netstack, no mux: the cost of the
//	                     netstack alone
//	impl=baseline-basic  quic-go on kernel UDP hidden behind a plain
//	                     net.PacketConn: what quic-go loses without its
//	                     batched I/O, GSO and buffer sizing
//
// xdpnet reports ratio = its figure / the baseline's from the same run.

// benchBaseline holds the baseline figure of each benchmark measured in
// this process, for the ratio.
var benchBaseline sync.Map

// plainPacketConn hides everything but net.PacketConn, as a netstack socket
// looks to quic-go.
type plainPacketConn struct{ net.PacketConn }

type benchSide struct {
	cli, srv net.PacketConn
	// useMux runs the client on quicmux.Conn, else on bare quic-go;
	// rawServer keeps the server on bare quic-go even with useMux;
	// muxSocket gives bare quic-go the socket Transport makes of cli
	// (see segmentingPacketConn), mux's I/O path without its connections.
	useMux, rawServer, muxSocket bool
	// packetSize is the client's Config.InitialPacketSize. quic-go finds
	// the path MTU itself only on kernel sockets; on the netstack it is set
	// from the link's MTU, as the engine does.
	packetSize uint16
}

// netstackPacketSize is the largest QUIC packet quic-go sends (1500-byte
// Ethernet MTU minus IPv6 and UDP headers), where its path MTU discovery
// ends on the kernel sockets of the baseline.
const netstackPacketSize = 1452

func kernelSide(b *testing.B, plain bool) benchSide {
	cli, srv := packetPair(b)
	if plain {
		return benchSide{cli: plainPacketConn{cli}, srv: plainPacketConn{srv}}
	}
	return benchSide{cli: cli, srv: srv}
}

// netstackSide gives the client a connected socket wrapped by
// ConnectedPacketConn (the path the engine uses), the server a listening one.
func netstackSide(b *testing.B) benchSide {
	a, bs := stacktest.Pair(b)
	dst := netip.AddrPortFrom(stacktest.AddrB4, 4433)
	srv, err := bs.ListenUDP(dst)
	if err != nil {
		b.Fatal(err)
	}
	c, err := a.DialUDP(netip.AddrPortFrom(stacktest.AddrA4, 0), dst)
	if err != nil {
		b.Fatal(err)
	}
	cli, err := ConnectedPacketConn(c)
	if err != nil {
		b.Fatal(err)
	}
	return benchSide{cli: cli, srv: srv, packetSize: netstackPacketSize}
}

type benchImpl struct {
	name string
	side func(b *testing.B) benchSide
}

var benchImpls = []benchImpl{
	{"baseline", func(b *testing.B) benchSide { return kernelSide(b, false) }},
	{"xdpnet", func(b *testing.B) benchSide { s := netstackSide(b); s.useMux = true; return s }},
	{"mux-kernel", func(b *testing.B) benchSide { s := kernelSide(b, false); s.useMux = true; return s }},
	{"quicgo-netstack", netstackSide},
	{"baseline-basic", func(b *testing.B) benchSide { return kernelSide(b, true) }},
}

// benchStream is what the benchmarks need of a stream.
type benchStream interface {
	io.ReadWriter
	CloseWrite() error
	Close() error
}

type rawStream struct{ *quic.Stream }

func (s rawStream) CloseWrite() error { return s.Stream.Close() }
func (s rawStream) Close() error      { return nil } // FIN sent, EOF read: done

// benchConn opens streams on one client connection.
type benchConn interface {
	open(ctx context.Context) (benchStream, error)
	close()
}

type rawConn struct{ c *quic.Conn }

func (c rawConn) open(ctx context.Context) (benchStream, error) {
	s, err := c.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return rawStream{s}, nil
}
func (c rawConn) close() { c.c.CloseWithError(0, "") }

type muxConn struct{ c *Conn }

// lossRate is the share of packets the client's connection declared lost.
func lossRate(c benchConn) float64 {
	var st quic.ConnectionStats
	switch c := c.(type) {
	case rawConn:
		st = c.c.ConnectionStats()
	case muxConn:
		st = c.c.QUIC().ConnectionStats()
	}
	return float64(st.PacketsLost) / float64(max(st.PacketsSent, 1))
}

func (c muxConn) open(ctx context.Context) (benchStream, error) { return c.c.OpenStream(ctx) }
func (c muxConn) close()                                        { c.c.Close() }

// benchEnv is a running server and a client transport.
type benchEnv struct {
	dial func(ctx context.Context) (benchConn, error)
}

// serveBench answers every stream: read to EOF, write one byte, close.
func serveBench(s benchStream) {
	io.Copy(io.Discard, s)
	s.Write([]byte{'k'})
	s.CloseWrite()
	s.Close()
}

var benchQUICConfig = Config{MaxIncomingStreams: 1000}

func newBenchEnv(b *testing.B, side benchSide) *benchEnv {
	cert, pool := labCert()
	srvTLS := ServerTLS(cert, ALPNRaw)
	cliTLS := ClientTLS("backend.lab", pool, ALPNRaw)
	raddr := side.srv.LocalAddr()
	var wg sync.WaitGroup
	b.Cleanup(wg.Wait)
	qconf := benchQUICConfig.quicConfig()
	qconf.Tracer = nil
	if side.useMux && !side.rawServer {
		ln, err := newTransport(b, side.srv, benchQUICConfig).Listen(srvTLS)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		wg.Go(func() {
			for {
				c, err := ln.Accept(context.Background())
				if err != nil {
					return
				}
				wg.Go(func() {
					for {
						s, err := c.AcceptStream(context.Background())
						if err != nil {
							return
						}
						go serveBench(s)
					}
				})
			}
		})
	} else {
		str := &quic.Transport{Conn: side.srv}
		ln, err := str.Listen(srvTLS, qconf)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close(); str.Close(); side.srv.Close() })
		wg.Go(func() {
			for {
				c, err := ln.Accept(context.Background())
				if err != nil {
					return
				}
				wg.Go(func() {
					for {
						s, err := c.AcceptStream(context.Background())
						if err != nil {
							return
						}
						go serveBench(rawStream{s})
					}
				})
			}
		})
	}
	cliConf := benchQUICConfig
	cliConf.InitialPacketSize = side.packetSize
	if side.useMux {
		tr := NewTransport(side.cli, cliConf)
		b.Cleanup(func() { tr.Close() })
		return &benchEnv{dial: func(ctx context.Context) (benchConn, error) {
			c, err := tr.Dial(ctx, raddr, cliTLS)
			if err != nil {
				return nil, err
			}
			return muxConn{c}, nil
		}}
	}
	ctr := &quic.Transport{Conn: side.cli}
	b.Cleanup(func() { ctr.Close(); side.cli.Close() })
	cliQConf := cliConf.quicConfig()
	if side.muxSocket {
		t := NewTransport(side.cli, cliConf)
		b.Cleanup(func() { t.Close() })
		ctr, cliQConf = t.tr, t.quicConfig()
	}
	cliQConf.Tracer = nil
	return &benchEnv{dial: func(ctx context.Context) (benchConn, error) {
		c, err := ctr.Dial(ctx, raddr, cliTLS.Clone(), cliQConf)
		if err != nil {
			return nil, err
		}
		return rawConn{c}, nil
	}}
}

// request sends n bytes (at least one) on a new stream and waits for the
// one-byte answer.
func request(ctx context.Context, c benchConn, payload []byte) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	if _, err := s.Write(payload); err != nil {
		return err
	}
	if err := s.CloseWrite(); err != nil {
		return err
	}
	var resp [2]byte
	n, err := io.ReadFull(s, resp[:1])
	if err != nil || n != 1 || resp[0] != 'k' {
		return err
	}
	if _, err := s.Read(resp[1:]); err != io.EOF {
		return err
	}
	return s.Close()
}

// measure runs fn and reports ops/elapsed as metric and the CPU time per op
// (client and server together: both run in this process). Against the
// baseline run earlier in the same process it reports ratio (throughput,
// higher is better) and cpu-ratio (baseline CPU per op over this CPU per
// op, higher is better). On a shared machine cpu-ns/op is the steadier
// figure: CPU time does not grow when other processes take the cores.
func measure(b *testing.B, impl, metric string, ops float64, fn func()) {
	b.ResetTimer()
	cpu0, start := testenv.CPUTime(), time.Now()
	fn()
	elapsed, cpu := time.Since(start), testenv.CPUTime()-cpu0
	b.StopTimer()
	v := ops / elapsed.Seconds()
	cpuPerOp := float64(cpu.Nanoseconds()) / float64(b.N)
	b.ReportMetric(v, metric)
	b.ReportMetric(cpuPerOp, "cpu-ns/op")
	key := b.Name()
	key = key[:len(key)-len(impl)]
	if impl == "baseline" {
		benchBaseline.Store(key, [2]float64{v, cpuPerOp})
	} else if base, ok := benchBaseline.Load(key); ok {
		bv := base.([2]float64)
		b.ReportMetric(v/bv[0], "ratio")
		b.ReportMetric(bv[1]/cpuPerOp, "cpu-ratio")
	}
}

func benchCtx(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancel)
	return ctx
}

// BenchmarkQUICStreams: 1-byte request and response, 64 streams in
// parallel, on one reused connection.
func BenchmarkQUICStreams(b *testing.B) { benchStreams(b, benchImpls) }

func benchStreams(b *testing.B, impls []benchImpl) {
	for _, impl := range impls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			env := newBenchEnv(b, impl.side(b))
			ctx := benchCtx(b)
			c, err := env.dial(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer c.close()
			measure(b, impl.name, "streams/s", float64(b.N), func() {
				if err := runStreams(ctx, c, b.N); err != nil {
					b.Error(err)
				}
			})
		})
	}
}

// runStreams makes n requests on c, 64 in parallel, and returns the first
// error.
func runStreams(ctx context.Context, c benchConn, n int) error {
	const parallel = 64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := range parallel {
		wg.Go(func() {
			for i := w; i < n; i += parallel {
				if err := request(ctx, c, []byte{'q'}); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// BenchmarkQUICStreamsMuxCost isolates what mux adds per stream, which the
// sequential sub-benchmarks of BenchmarkQUICStreams cannot resolve on a
// shared machine: a quicmux.Conn client and a bare quic-go client, each on
// its own connected netstack socket to a bare quic-go server, run
// alternately in rounds of b.N streams within one process, so both see the
// same load, heap and warm-up. See benchMuxCost.
func BenchmarkQUICStreamsMuxCost(b *testing.B) {
	benchMuxCost(b, func(b *testing.B, useMux bool) benchSide {
		s := netstackSide(b)
		s.useMux, s.rawServer = useMux, true
		return s
	})
}

// benchMuxCost runs the rounds of a MuxCost benchmark. It reports, per
// client, the median over the rounds of the process's CPU time per stream
// (bare-cpu-ns/op, mux-cpu-ns/op) and the process's heap allocations per
// stream (bare-allocs/op, mux-allocs/op, over all rounds); mux-cpu-ratio
// is bare over mux (1: mux costs nothing). ns/op is suppressed: each client
// runs rounds*b.N streams.
func benchMuxCost(b *testing.B, side func(b *testing.B, useMux bool) benchSide) {
	const rounds = 6
	ctx := benchCtx(b)
	var conns [2]benchConn // bare, mux
	for i, useMux := range []bool{false, true} {
		c, err := newBenchEnv(b, side(b, useMux)).dial(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer c.close()
		conns[i] = c
	}
	var cpu [2][]float64
	var allocs [2]uint64
	var ms runtime.MemStats
	b.ResetTimer()
	for r := range rounds {
		for k := range conns {
			i := (k + r) % len(conns) // alternate which client goes first
			runtime.ReadMemStats(&ms)
			mallocs, cpu0 := ms.Mallocs, testenv.CPUTime()
			if err := runStreams(ctx, conns[i], b.N); err != nil {
				b.Fatal(err)
			}
			cpu[i] = append(cpu[i], float64((testenv.CPUTime()-cpu0).Nanoseconds())/float64(b.N))
			runtime.ReadMemStats(&ms)
			allocs[i] += ms.Mallocs - mallocs
		}
	}
	b.StopTimer()
	median := func(v []float64) float64 {
		slices.Sort(v)
		return v[len(v)/2]
	}
	bare, mux := median(cpu[0]), median(cpu[1])
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(bare, "bare-cpu-ns/op")
	b.ReportMetric(mux, "mux-cpu-ns/op")
	b.ReportMetric(bare/mux, "mux-cpu-ratio")
	b.ReportMetric(float64(allocs[0])/float64(rounds*b.N), "bare-allocs/op")
	b.ReportMetric(float64(allocs[1])/float64(rounds*b.N), "mux-allocs/op")
}

// BenchmarkQUICHandshakes: a new connection per iteration (handshake and
// one request), 4 in parallel.
func BenchmarkQUICHandshakes(b *testing.B) { benchHandshakes(b, benchImpls) }

func benchHandshakes(b *testing.B, impls []benchImpl) {
	for _, impl := range impls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			env := newBenchEnv(b, impl.side(b))
			ctx := benchCtx(b)
			const parallel = 4
			measure(b, impl.name, "handshakes/s", float64(b.N), func() {
				var wg sync.WaitGroup
				var failed sync.Once
				for w := range parallel {
					wg.Go(func() {
						for i := w; i < b.N; i += parallel {
							c, err := env.dial(ctx)
							if err == nil {
								err = request(ctx, c, []byte{'q'})
								c.close()
							}
							if err != nil {
								failed.Do(func() { b.Error(err) })
								return
							}
						}
					})
				}
				wg.Wait()
			})
		})
	}
}

// BenchmarkQUICBulk: one stream carries b.N chunks of 64 KiB.
func BenchmarkQUICBulk(b *testing.B) { benchBulk(b, benchImpls) }

func benchBulk(b *testing.B, impls []benchImpl) {
	const chunk = 64 << 10
	for _, impl := range impls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			env := newBenchEnv(b, impl.side(b))
			ctx := benchCtx(b)
			c, err := env.dial(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer c.close()
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			measure(b, impl.name, "Gbit/s", float64(b.N)*chunk*8/1e9, func() {
				s, err := c.open(ctx)
				if err != nil {
					b.Fatal(err)
				}
				for range b.N {
					if _, err := s.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				s.CloseWrite()
				var resp [1]byte
				if _, err := io.ReadFull(s, resp[:]); err != nil {
					b.Fatal(err)
				}
				s.Close()
			})
			b.ReportMetric(lossRate(c), "lost/sent")
		})
	}
}

// BenchmarkQUICReadyStream is what one stream opened ahead costs (see
// Config.ReadyStreams): AvailStreams opens b.N of them in one call, streams
// quic-go holds that have sent nothing yet.
func BenchmarkQUICReadyStream(b *testing.B) {
	cli, _ := quicPair(b, ALPNRaw, Config{MaxIncomingStreams: int64(b.N)}, Config{ReadyStreams: b.N})
	b.ReportAllocs()
	b.ResetTimer()
	if got := cli.AvailStreams(); got != b.N {
		b.Fatalf("AvailStreams = %d, want %d", got, b.N)
	}
}
