package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/xdpnet/xdpnet/engine/stats"

	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/engine/enginelab"
)

type demoOpts struct {
	requests int
	duration time.Duration
	conns    int
	size     int
	stack    string
	compare  bool
	verbose  bool
}

func demoCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	var o demoOpts
	fs.IntVar(&o.requests, "n", 20000, "requests per run (the load stops at -n or -d, whichever comes first)")
	fs.DurationVar(&o.duration, "d", 8*time.Second, "time limit per run")
	fs.IntVar(&o.conns, "c", 16, "concurrent client connections")
	fs.IntVar(&o.size, "size", 1024, "response body size in bytes")
	fs.StringVar(&o.stack, "stack", "xdp", `data plane: "xdp" (AF_XDP + netstack) or "kernel"`)
	fs.BoolVar(&o.compare, "compare", true, "also run the same load through the same proxy on the kernel stack (the baseline)")
	fs.BoolVar(&o.verbose, "v", false, "show the engine's info logs")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.stack != "xdp" && o.stack != "kernel" {
		return fmt.Errorf("%w: -stack must be xdp or kernel", errUsage)
	}
	if o.requests <= 0 || o.duration <= 0 || o.conns <= 0 || o.size < 0 || o.size > 1<<20 {
		return fmt.Errorf("%w: -n, -d and -c must be positive, -size at most 1 MiB", errUsage)
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo builds network namespaces, veth pairs and XDP programs: run it as root")
	}
	quietQUIC()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	fmt.Fprintln(stdout, "xdpnet demo: client ns (198.18.1.2) -> engine ns (198.18.1.1 | 198.18.2.1) -> backend ns (origins 198.18.2.10, .11)")
	var results []*runResult
	stacks := []string{o.stack}
	if o.compare && o.stack == "xdp" {
		stacks = append(stacks, "kernel")
	}
	var runErr error
	for _, st := range stacks {
		if ctx.Err() != nil {
			break
		}
		r, err := demoRun(ctx, st, o, log, stdout)
		if r != nil {
			results = append(results, r)
		}
		if err != nil {
			if st == "xdp" && r == nil {
				// Say so plainly and go on with the baseline, which shows
				// the proxy working, but never label it as the XDP path.
				fmt.Fprintf(stdout, "\nthe AF_XDP data plane could not start here: %v\n", err)
				if !slices.Contains(stacks, "kernel") {
					stacks = append(stacks, "kernel")
				}
				fmt.Fprintln(stdout, "continuing on the kernel stack only: the figures below are NOT the AF_XDP path")
				runErr = err
				continue
			}
			runErr = err
			break
		}
	}
	if len(results) > 0 {
		printSummary(stdout, results, o)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stdout, "interrupted: the lab and the engine were torn down")
		return errors.New("interrupted")
	}
	return runErr
}

// runResult is one load run through the engine on one stack.
type runResult struct {
	stack      string
	ok, failed int64
	elapsed    time.Duration
	lat        []time.Duration
	firstErr   error
	h3, tunnel string
	stats      stats.Stats
	peakFrames int64
	// net sums the data plane's snapshot at the end; nil on the kernel
	// stack.
	net          *dataplane.Totals
	originReqs   int64
	originConns  int64
	shutdownErr  error
	shutdownTook time.Duration
}

func demoRun(ctx context.Context, stack string, o demoOpts, log *slog.Logger, stdout io.Writer) (*runResult, error) {
	fmt.Fprintf(stdout, "\n== %s stack ==\n", stack)
	env, err := enginelab.Start(enginelab.Options{Stack: stack, Log: log, Admin: adminAddr()})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := env.Close(); err != nil {
			fmt.Fprintf(stdout, "cleanup: %v\n", err)
		}
	}()
	r := &runResult{stack: env.Engine.StackName()}
	fmt.Fprintf(stdout, "engine on %s, %d workers; admin http://%s/metrics (try: xdpnet stats -admin %s)\n",
		r.stack, env.Engine.Stats().Workers, env.Engine.AdminAddr(), env.Engine.AdminAddr())

	r.h3 = checkH3(ctx, env)
	fmt.Fprintf(stdout, "h3 frontend  (%s, quic-go HTTP/3 client): %s\n", env.FrontendURL("h3"), r.h3)
	r.tunnel = checkTunnel(ctx, env)
	fmt.Fprintf(stdout, "tcp frontend (%s, raw QUIC streams, echo): %s\n", strings.TrimPrefix(env.FrontendURL("tcp"), "http://"), r.tunnel)

	url := fmt.Sprintf("%s/bytes/%d", env.FrontendURL("http"), o.size)
	fmt.Fprintf(stdout, "load: GET %s, Go net/http, %d connections, up to %d requests or %v\n", url, o.conns, o.requests, o.duration)
	client := env.HTTPClient(o.conns, false)
	defer client.CloseIdleConnections()

	lctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var next, ok, failed atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range o.conns {
		wg.Go(func() {
			lat := make([]time.Duration, 0, o.requests/o.conns+1)
			defer func() {
				mu.Lock()
				r.lat = append(r.lat, lat...)
				mu.Unlock()
			}()
			for lctx.Err() == nil && next.Add(1) <= int64(o.requests) {
				t0 := time.Now()
				err := fetch(lctx, client, url, o.size)
				if lctx.Err() != nil && err != nil {
					return // cut by the time limit: not a failure of the engine
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if r.firstErr == nil {
						r.firstErr = err
					}
					mu.Unlock()
					continue
				}
				lat = append(lat, time.Since(t0))
				ok.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	progress := func() {
		st := env.Engine.Stats()
		el := time.Since(start)
		line := fmt.Sprintf("\r  %5.1fs  ok %7d  failed %4d  %7.0f req/s  backend conns opened %3.0f",
			el.Seconds(), ok.Load(), failed.Load(), float64(ok.Load())/el.Seconds(), st.BackendConnsOpened)
		if st.Net != nil {
			frames := st.Net.Totals().FramesInUse
			r.peakFrames = max(r.peakFrames, frames)
			line += fmt.Sprintf("  UMEM frames in use %5d", frames)
		}
		fmt.Fprint(stdout, line)
	}
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
			progress()
		}
	}
	r.elapsed = time.Since(start)
	progress()
	fmt.Fprintln(stdout)
	r.ok, r.failed = ok.Load(), failed.Load()

	// Graceful drain, as on SIGTERM, with its own deadline.
	r.stats = env.Engine.Stats()
	if r.stats.Net != nil {
		t := r.stats.Net.Totals()
		r.net = &t
	}
	for _, og := range env.Origins {
		s := og.Stats()
		r.originReqs += s.Requests
		r.originConns += s.Conns
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	t0 := time.Now()
	r.shutdownErr = env.Engine.Shutdown(sctx)
	r.shutdownTook = time.Since(t0)
	scancel()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	return r, nil
}

// adminAddr is the demo's admin address: the default port if free, else
// any port.
func adminAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:9900")
	if err != nil {
		return "127.0.0.1:0"
	}
	ln.Close()
	return "127.0.0.1:9900"
}

func fetch(ctx context.Context, c *http.Client, url string, size int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || n != int64(size) {
		return fmt.Errorf("status %d, %d body bytes", resp.StatusCode, n)
	}
	return nil
}

// checkH3 sends a few requests to the h3 frontend with quic-go's HTTP/3
// client from the client namespace.
func checkH3(ctx context.Context, env *enginelab.Env) string {
	c, closeFn, err := env.HTTP3Client()
	if err != nil {
		return "FAILED: " + err.Error()
	}
	defer closeFn()
	const n = 20
	good := 0
	var first error
	for range n {
		if err := fetch(ctx, c, env.FrontendURL("h3")+"/bytes/512", 512); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		good++
	}
	if good == n {
		return fmt.Sprintf("%d/%d requests ok", good, n)
	}
	return fmt.Sprintf("FAILED %d of %d: %v", n-good, n, first)
}

// checkTunnel sends 64 KiB through each of a few tunnels and checks the
// echo.
func checkTunnel(ctx context.Context, env *enginelab.Env) string {
	addr := strings.TrimPrefix(env.FrontendURL("tcp"), "http://")
	const n, size = 4, 64 << 10
	var good atomic.Int32
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := func() error {
				dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				c, err := env.Dial(dctx, "tcp", addr)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				msg := []byte(strings.Repeat(string(rune('a'+i)), size))
				go func() {
					c.Write(msg)
					c.(*net.TCPConn).CloseWrite()
				}()
				back, err := io.ReadAll(c)
				if err != nil {
					return err
				}
				if string(back) != string(msg) {
					return fmt.Errorf("echo mismatch: %d bytes back", len(back))
				}
				return nil
			}()
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			good.Add(1)
		})
	}
	wg.Wait()
	if good.Load() == n {
		return fmt.Sprintf("%d/%d tunnels echoed %d KiB intact", n, n, size>>10)
	}
	return fmt.Sprintf("FAILED %d of %d: %v", n-int(good.Load()), n, firstErr.Load())
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func printSummary(w io.Writer, rs []*runResult, o demoOpts) {
	fmt.Fprintln(w, "\n== summary ==")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, f func(r *runResult) string) {
		fmt.Fprintf(tw, "%s\t", name)
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t", f(r))
		}
		fmt.Fprintln(tw)
	}
	row("stack", func(r *runResult) string { return r.stack })
	row("requests ok / failed", func(r *runResult) string { return fmt.Sprintf("%d / %d", r.ok, r.failed) })
	row("requests/s", func(r *runResult) string { return fmt.Sprintf("%.0f", float64(r.ok)/r.elapsed.Seconds()) })
	for _, r := range rs {
		slices.Sort(r.lat)
	}
	row("latency p50", func(r *runResult) string { return percentile(r.lat, 0.50).Round(time.Microsecond).String() })
	row("latency p99", func(r *runResult) string { return percentile(r.lat, 0.99).Round(time.Microsecond).String() })
	row("backend conns opened", func(r *runResult) string { return fmt.Sprintf("%.0f", r.stats.BackendConnsOpened) })
	row("requests served by origins", func(r *runResult) string { return fmt.Sprintf("%d", r.originReqs) })
	row("backend conns per 1000 req", func(r *runResult) string {
		if r.stats.BackendRequests == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", 1000*r.stats.BackendConnsOpened/r.stats.BackendRequests)
	})
	row("reuse ratio (pool)", func(r *runResult) string { return fmt.Sprintf("%.4f", r.stats.Reuse.ReuseRatio()) })
	row("retries", func(r *runResult) string { return fmt.Sprintf("%.0f", r.stats.Retries) })
	row("retries on dead reused conns", func(r *runResult) string { return fmt.Sprintf("%d", r.stats.Reuse.Retries) })
	// net shows a figure of the data plane's, "n/a" on the kernel stack.
	net := func(f func(r *runResult, t *dataplane.Totals) string) func(r *runResult) string {
		return func(r *runResult) string {
			if r.net == nil {
				return "n/a (kernel)"
			}
			return f(r, r.net)
		}
	}
	row("UMEM frames in use (peak / total)", net(func(r *runResult, t *dataplane.Totals) string {
		return fmt.Sprintf("%d / %d", r.peakFrames, t.Frames)
	}))
	row("XDP redirected / passed to kernel", net(func(_ *runResult, t *dataplane.Totals) string {
		return fmt.Sprintf("%d / %d", t.Redirected, t.Passed)
	}))
	row("AF_XDP rx / tx packets", net(func(_ *runResult, t *dataplane.Totals) string {
		return fmt.Sprintf("%d / %d", t.RxPackets, t.TxPackets)
	}))
	row("AF_XDP kernel drops", net(func(_ *runResult, t *dataplane.Totals) string {
		return fmt.Sprintf("%d", t.KernelDrops)
	}))
	row("h3 frontend", func(r *runResult) string { return short(r.h3) })
	row("tcp tunnels", func(r *runResult) string { return short(r.tunnel) })
	row("graceful drain", func(r *runResult) string {
		if r.shutdownErr != nil {
			return "FAILED: " + r.shutdownErr.Error()
		}
		return "ok in " + r.shutdownTook.Round(time.Millisecond).String()
	})
	tw.Flush()
	for _, r := range rs {
		if r.firstErr != nil {
			fmt.Fprintf(w, "%s: first failure: %v\n", r.stack, r.firstErr)
		}
	}
	fmt.Fprintf(w, "(2-core shared VM; compare figures only within one run. Load: %d conns, %d-byte responses.)\n", o.conns, o.size)
}

func short(s string) string {
	if i := strings.Index(s, " requests ok"); i > 0 {
		return s[:i] + " ok"
	}
	if i := strings.Index(s, " tunnels echoed"); i > 0 {
		return s[:i] + " ok"
	}
	return s
}
