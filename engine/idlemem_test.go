package engine_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// holderEnv, when set in the environment of this test binary, makes it an
// idle-connection holder instead of running tests (see TestMain): it opens
// the connections, sends one GET on each, reads the response, prints a
// line "ready OPENED" and then holds them until its standard input closes
// or it is killed. Over HTTP/1.1 it holds them without a goroutine or
// buffer per connection; over HTTP/2 each keeps net/http's client reader.
const holderEnv = "XDPNET_IDLE_HOLDER" // value: "ADDR N PATH KIND [LOCAL,...]"

// Idle connection kinds (holder and BenchmarkIdleConnMemory): HTTP/1.1,
// h2c with prior knowledge, and HTTPS with ALPN http/1.1 or h2.
const (
	kindH1      = "h1"
	kindH2C     = "h2c"
	kindHTTPSH1 = "https-h1"
	kindHTTPSH2 = "https-h2"
)

// holdIdle is the holder's main; it returns the exit status. LOCAL names
// the client addresses its connections come from in turn (the kernel has
// fewer than 30,000 ephemeral ports per address and destination).
func holdIdle(spec string) int {
	f := strings.Fields(spec)
	if len(f) != 4 && len(f) != 5 {
		fmt.Fprintf(os.Stderr, "holder: want ADDR N PATH KIND [LOCAL,...], got %q\n", spec)
		return 2
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "holder: %v\n", err)
		return 2
	}
	var locals []net.Addr
	if len(f) == 5 {
		for a := range strings.SplitSeq(f[4], ",") {
			locals = append(locals, &net.TCPAddr{IP: net.ParseIP(a)})
		}
	}
	if lim, err := raiseNoFile(); err != nil || n+100 > lim {
		fmt.Fprintf(os.Stderr, "holder: %d connections with %d descriptors: %v\n", n, lim, err)
		return 2
	}
	conns := make([]io.Closer, n)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
		first  error
	)
	next := make(chan int)
	for range 64 {
		wg.Go(func() {
			for i := range next {
				d := net.Dialer{Timeout: 10 * time.Second}
				if len(locals) > 0 {
					d.LocalAddr = locals[i%len(locals)]
				}
				c, err := holdOne(&d, f[0], f[2], f[3])
				if err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = err
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		fmt.Fprintf(os.Stderr, "holder: %d failed, first: %v\n", failed, first)
	}
	fmt.Printf("ready %d\n", n-failed)
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return 0
}

// holdOne opens one connection of kind to addr, GETs path on it and
// returns it idle.
func holdOne(d *net.Dialer, addr, path, kind string) (io.Closer, error) {
	if kind == kindH2C || kind == kindHTTPSH2 {
		return holdH2(d, addr, path, kind)
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (io.Closer, error) {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if kind == kindHTTPSH1 {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			return fail(err)
		}
		c = tc
	}
	if _, err = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: lab\r\n\r\n"); err == nil {
		var resp *http.Response
		if resp, err = http.ReadResponse(bufio.NewReaderSize(c, 512), nil); err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	if err != nil {
		return fail(err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// holdH2 is holdOne for h2c (prior knowledge) and h2 over TLS, through
// net/http's client connection (it keeps a reader goroutine).
func holdH2(d *net.Dialer, addr, path, kind string) (io.Closer, error) {
	var protos http.Protocols
	scheme := "https"
	if kind == kindH2C {
		protos.SetUnencryptedHTTP2(true)
		scheme = "http"
	} else {
		protos.SetHTTP2(true)
	}
	tr := &http.Transport{
		DialContext:     d.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		Protocols:       &protos,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc, err := tr.NewClientConn(ctx, scheme, addr)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+path, nil)
	resp, err := cc.RoundTrip(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.ProtoMajor != 2 {
			err = fmt.Errorf("%s answered over %s", kind, resp.Proto)
		}
	}
	if err != nil {
		cc.Close()
		return nil, err
	}
	return cc, nil
}

// raiseNoFile raises this process's soft descriptor limit to its hard
// limit, which processes it starts afterwards inherit, and returns it.
// The hard limit stays: this sandbox keeps it at 20,000 and has no
// CAP_SYS_RESOURCE to raise it.
func raiseNoFile() (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return int(min(lim.Cur, 1<<30)), nil
}

// fdCap is n, or what a process with this process's descriptor limit can
// hold with perConn descriptors per connection if fewer.
func fdCap(tb testing.TB, n, perConn int) int {
	lim, err := raiseNoFile()
	if err != nil {
		tb.Fatal(err)
	}
	return min(n, (lim-1000)/perConn)
}

// holderConns is how many connections one holder process holds at most:
// what its descriptor limit allows, and fewer than the kernel's ephemeral
// ports (32768-60999) for one client address and destination.
func holderConns(tb testing.TB) int { return min(fdCap(tb, 1<<30, 1), 25000) }

// idleClients is how many client addresses (one per holder) hold n
// connections.
func idleClients(tb testing.TB, n int) int {
	h := holderConns(tb)
	return (n + h - 1) / h
}

// memSample is a process's memory at one moment.
type memSample struct {
	rss        int64  // VmRSS, bytes
	heapInuse  uint64 // bytes in spans holding objects
	heapLive   uint64 // bytes of live objects (HeapAlloc after a collection)
	stack      uint64
	goroutines int
}

// vmRSS reads VmRSS of a process from /proc (pid 0: this one).
func vmRSS(pid int) (int64, error) {
	p := "/proc/self/status"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("%s: no VmRSS", p)
}

// selfMem samples this process after a full collection that returns freed
// memory to the OS, so that two samples differ by what is live.
func selfMem(tb testing.TB) memSample {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, err := vmRSS(0)
	if err != nil {
		tb.Fatal(err)
	}
	return memSample{rss: rss, heapInuse: ms.HeapInuse, heapLive: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// startHolder starts this test binary as a holder of n HTTP/1.1
// connections to addr in ns and waits until they are open and idle; it
// returns how many opened and a function that closes them and waits for
// the holder.
func startHolder(tb testing.TB, ns *lab.NS, addr string, n int, path string) (int, func()) {
	return startHolderOf(tb, ns, addr, n, path, kindH1, nil)
}

// startHolderOf is startHolder for connections of kind, from as many
// holder processes as their descriptor limit needs, holder i dialing from
// locals[i] (none: the kernel's choice of client address).
func startHolderOf(tb testing.TB, ns *lab.NS, addr string, n int, path, kind string, locals []netip.Addr) (int, func()) {
	tb.Helper()
	per := holderConns(tb)
	var (
		opened int
		stops  []func()
	)
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	for i := 0; n > 0; i++ {
		var local []netip.Addr
		if len(locals) > 0 {
			local = locals[i%len(locals) : i%len(locals)+1]
		}
		k, s := startHolderProc(tb, ns, addr, min(n, per), path, kind, local)
		opened += k
		stops = append(stops, s)
		n -= min(n, per)
	}
	return opened, stop
}

// startHolderProc starts one holder process of n connections.
func startHolderProc(tb testing.TB, ns *lab.NS, addr string, n int, path, kind string, locals []netip.Addr) (int, func()) {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe)
	spec := fmt.Sprintf("%s=%s %d %s %s", holderEnv, addr, n, path, kind)
	if len(locals) > 0 {
		ls := make([]string, len(locals))
		for i, a := range locals {
			ls[i] = a.String()
		}
		spec += " " + strings.Join(ls, ",")
	}
	cmd.Env = append(os.Environ(), spec)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out := &capBuffer{max: 1 << 16}
	cmd.Stdout, cmd.Stderr = out, out
	if err := ns.Start(cmd); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	tb.Cleanup(stop)
	// Ready once it says so (a minute per 4,000 connections at most:
	// 19,000 took 80 s with the load average at 20), or gone.
	opened := -1
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(time.Duration(1+n/4000) * time.Minute)
wait:
	for {
		for line := range strings.Lines(out.String()) {
			if v, found := strings.CutPrefix(line, "ready "); found {
				opened, _ = strconv.Atoi(strings.TrimSpace(v))
				break wait
			}
		}
		select {
		case <-done:
			break wait
		case <-limit:
			break wait
		case <-tick.C:
		}
	}
	if opened < 0 {
		stop()
		tb.Fatalf("holder did not get ready: %s", out.String())
	}
	if opened < n {
		tb.Logf("holder: %s", out.String())
	}
	return opened, stop
}

// idleConnCount is the number of connections BenchmarkIdleConnMemory holds
// (XDPNET_IDLE_CONNS overrides it).
func idleConnCount(tb testing.TB) int {
	n := 10000
	if v := os.Getenv("XDPNET_IDLE_CONNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			tb.Fatalf("XDPNET_IDLE_CONNS=%q: want a positive count", v)
		}
	}
	return n
}

const idleMemConfig = `dataplane: xdp
admin: 127.0.0.1:0
log: {level: warn}
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - {name: http, listen: "198.18.1.1:8080", protocol: http, backend: origins, timeouts: {idle: 10m}}
backends:
  - name: origins
    protocol: h3
    health_check: {enabled: false}
    servers:
      - {name: origin-a, address: "198.18.2.10:4433"}
`

// idleBenchConfig is idleMemConfig with room for n client connections and
// an https frontend on 8443 with a self-signed certificate.
func idleBenchConfig(tb testing.TB, n int) string {
	c, k, err := quicmux.WriteSelfSigned(tb.TempDir(), []string{"198.18.1.1"}, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	https := fmt.Sprintf(`  - {name: https, listen: "198.18.1.1:8443", protocol: https, backend: origins, timeouts: {idle: 10m}, tls: {cert: %s, key: %s}}
backends:`, c, k)
	text := strings.Replace(idleMemConfig, "backends:", https, 1)
	return fmt.Sprintf("max_connections: %d\n%s", n+1000, text)
}

// BenchmarkIdleConnMemory measures what an idle keep-alive client
// connection costs in resident memory: a holder process in the client
// namespace opens N connections (10,000; XDPNET_IDLE_CONNS; one holder
// process and client address per 19,000, its descriptor limit), sends one
// GET on each and holds them idle. For the engine (in this process, on the AF_XDP netstack and on kernel
// sockets) each kind of connection is measured: HTTP/1.1 and h2c (prior
// knowledge) on the http frontend, HTTPS with ALPN http/1.1 and h2 on the
// https one. The figure is the growth of VmRSS, Go heap in use and
// goroutine stacks between a sample before and one with the connections
// idle, each after a collection that returns freed memory to the OS; with
// XDPNET_IDLE_PROFILE=DIR it writes the heap profile with the connections
// idle to DIR/idle-<stack>-<kind>.pprof (read with go tool pprof
// -sample_index=inuse_space). HAProxy and Caddy, when installed, run as
// processes in the client namespace answering the HTTP/1.1 GET themselves
// (no origin behind them); their figure is the growth of their VmRSS. The
// kernel data plane and the peers need a descriptor per connection
// (HAProxy two): above this sandbox's hard limit (20,000) they hold what it
// allows. Run it alone with -benchtime 1x: each iteration builds its lab.
func BenchmarkIdleConnMemory(b *testing.B) {
	privtest.RequireRoot(b)
	n := idleConnCount(b)
	for _, stack := range []string{"xdp", "kernel"} {
		for _, kind := range []string{kindH1, kindH2C, kindHTTPSH1, kindHTTPSH2} {
			b.Run("impl=xdpnet-"+stack+"/kind="+kind, func(b *testing.B) {
				for b.Loop() {
					benchIdleEngine(b, stack, kind, n)
				}
			})
		}
	}
	for _, peer := range []string{"haproxy", "caddy"} {
		b.Run("impl="+peer+"/kind="+kindH1, func(b *testing.B) {
			for b.Loop() {
				benchIdlePeer(b, peer, n)
			}
		})
	}
}

func benchIdleEngine(b *testing.B, stack, kind string, n int) {
	prev := runtime.MemProfileRate
	runtime.MemProfileRate = 4096
	defer func() { runtime.MemProfileRate = prev }()
	if stack == "kernel" {
		n = fdCap(b, n, 1)
	}
	env, err := enginelab.Start(enginelab.Options{Stack: stack, Config: idleBenchConfig(b, n), Admin: "127.0.0.1:0", Clients: idleClients(b, n)})
	privtest.SkipIfNotSupported(b, err)
	if err != nil {
		b.Fatal(err)
	}
	defer env.Close()
	// Warm up: the backend connection, the proxy's pools and the
	// frontend's first connections of this kind exist before the first
	// sample.
	c := env.HTTPClient(4, false)
	for range 8 {
		if err := getOK(b.Context(), c.Transport, env.FrontendURL("http")+"/bytes/64"); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	c.CloseIdleConnections()
	addr := "198.18.1.1:8080"
	if kind == kindHTTPSH1 || kind == kindHTTPSH2 {
		addr = "198.18.1.1:8443"
	}
	locals := env.Lab.ClientLink.PeerV4()
	warm, stopWarm := startHolderOf(b, env.Lab.Client, addr, 8, "/bytes/64", kind, locals)
	stopWarm()
	if warm != 8 {
		b.Fatalf("warm-up: %d of 8 %s connections answered", warm, kind)
	}
	before := selfMem(b)
	opened, stop := startHolderOf(b, env.Lab.Client, addr, n, "/bytes/64", kind, locals)
	defer stop()
	after := selfMem(b)
	if dir := os.Getenv("XDPNET_IDLE_PROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, "idle-"+stack+"-"+kind+".pprof"))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	reportIdle(b, opened, after.rss-before.rss)
	b.ReportMetric(float64(int64(after.heapInuse)-int64(before.heapInuse))/float64(opened), "heap-B/conn")
	b.ReportMetric(float64(int64(after.heapLive)-int64(before.heapLive))/float64(opened), "live-B/conn")
	b.ReportMetric(float64(int64(after.stack)-int64(before.stack))/float64(opened), "stack-B/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(opened), "goroutines/conn")
}

func reportIdle(b *testing.B, opened int, grown int64) {
	b.ReportMetric(float64(opened), "conns")
	b.ReportMetric(float64(grown)/float64(opened), "RSS-B/conn")
	b.ReportMetric(float64(grown)/(1<<20), "RSS-MiB")
}

// peerIdleConfig is a peer's configuration answering GET / itself on
// addr, with idle keep-alive connections kept 10 minutes.
func peerIdleConfig(peer, addr string, n int) (name, text string) {
	host, port, _ := net.SplitHostPort(addr)
	switch peer {
	case "haproxy":
		return "haproxy.cfg", fmt.Sprintf(`global
  maxconn %d
defaults
  mode http
  timeout client 10m
  timeout http-keep-alive 10m
  timeout http-request 10s
frontend idle
  bind %s
  http-request return status 200 content-type text/plain string ok
`, n+100, addr)
	default:
		return "Caddyfile", fmt.Sprintf(`{
	admin off
	auto_https off
	servers {
		protocols h1
		timeouts {
			idle 10m
		}
	}
}
http://:%s {
	bind %s
	respond "ok"
}
`, port, host)
	}
}

func benchIdlePeer(b *testing.B, peer string, n int) {
	// HAProxy reserves two descriptors per connection (client and server
	// side) and refuses to start when maxconn needs more than its limit;
	// Caddy needs one. With this sandbox's limit they hold fewer than n
	// then, and the figure is per connection held.
	n = fdCap(b, n, map[string]int{"haproxy": 2, "caddy": 1}[peer])
	l, err := lab.New(lab.Options{Clients: idleClients(b, n)})
	privtest.SkipIfNotSupported(b, err)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	addr := net.JoinHostPort(l.ClientLink.PeerV4()[0].String(), "18080")
	name, text := peerIdleConfig(peer, addr, n)
	cfg := filepath.Join(b.TempDir(), name)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	args := []string{"-f", cfg, "-db"}
	if peer == "caddy" {
		args = []string{"run", "--config", cfg, "--adapter", "caddyfile"}
	}
	path, err := exec.LookPath(peer)
	if err != nil {
		b.Skipf("%s not installed", peer)
	}
	p, err := launch(l.Client, []string{"GOMAXPROCS=2"}, path, args...)
	if err != nil {
		b.Fatal(err)
	}
	defer p.kill()
	// Ready and warmed up: a first holder of 8 connections.
	exited := func() bool {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	if !testutil.Eventually(func() bool {
		if exited() {
			return true
		}
		var c net.Conn
		err := l.Client.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, time.Second); return })
		if err == nil {
			c.Close()
		}
		return err == nil
	}) || exited() {
		b.Fatalf("%s did not listen on %s: %s", peer, addr, p.out.String())
	}
	warm, stopWarm := startHolder(b, l.Client, addr, 8, "/")
	stopWarm()
	if warm != 8 {
		b.Fatalf("%s: %d of 8 warm-up requests answered", peer, warm)
	}
	pid := p.cmd.Process.Pid
	before, err := vmRSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	opened, stop := startHolderOf(b, l.Client, addr, n, "/", kindH1, l.ClientLink.PeerV4())
	defer stop()
	after, err := vmRSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	reportIdle(b, opened, after-before)
}
