package engine_test

// The fault suite of issue 17: third-party origins, clients and fault tools
// in the veth lab, one scenario per observation 1-5 of the issue. Each
// scenario logs its figures on a line starting with "FIGURES" (grep for
// it): failed requests, max latency, time to recover. Recovery is measured
// from the moment the origin answers again (checked directly, from its own
// namespace) to the first request the engine serves after it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/lab"
)

// recoverWithin bounds every wait for the engine to serve again. The issue
// asks for 1 s; the bound is generous for a loaded 2-core machine running
// tests in parallel under -race, and the measured time is logged.
const recoverWithin = 10 * time.Second

// faultLab is an engine in the lab with third-party origins at
// 198.18.2.10:443, .11:443, ...
type faultLab struct {
	env     *enginelab.Env
	files   originFiles
	kinds   []originKind
	addrs   []netip.AddrPort
	origins []*proc   // nil until started
	state   []string  // the origins' scratch directories
	nft     *nftTable // the fault's rules, if any
}

// faultOpts shape a faultLab.
type faultOpts struct {
	kinds []originKind // one origin per kind, in server order
	// late starts no origin before the engine.
	late bool
	// Extra configuration (see faultConfig).
	backend, frontend, moreFrontends, top string
	// edit holds pairs of strings: each first one of the configuration is
	// replaced by the second (to loosen the fast checks and timeouts).
	edit []string
}

// startFaultLab builds the lab, starts the origins (unless late), then
// the engine on the xdp data plane.
func startFaultLab(t *testing.T, o faultOpts) *faultLab {
	t.Helper()
	f := &faultLab{kinds: o.kinds}
	var hosts []string
	for i, k := range o.kinds {
		needTool(t, k.name)
		f.addrs = append(f.addrs, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 2, byte(10 + i)}), 443))
		hosts = append(hosts, f.addrs[i].Addr().String())
		f.state = append(f.state, t.TempDir())
	}
	f.origins = make([]*proc, len(o.kinds))
	f.files = newOriginFiles(t, hosts...)
	cfg := withBackendProtocol(faultConfig(f.files.cert, f.addrs, o.backend, o.frontend, o.moreFrontends, o.top), o.kinds[0].proto)
	for i := 0; i+1 < len(o.edit); i += 2 {
		cfg = strings.Replace(cfg, o.edit[i], o.edit[i+1], 1)
	}
	var started []*proc
	env := startLab(t, "xdp", enginelab.Options{
		Config:    cfg,
		NoOrigins: true,
		BeforeEngine: func(l *lab.Lab) error {
			if o.late {
				return nil
			}
			for i := range o.kinds {
				p, err := launchOrigin(o.kinds[i], l.Backend, f.addrs[i], f.files, f.state[i])
				if err == nil {
					started = append(started, p)
					f.origins[i] = p
					_, err = originReady(o.kinds[i], l.Backend, f.addrs[i], p, 10*time.Second)
				}
				if err != nil {
					for _, p := range started {
						p.kill()
					}
					return err
				}
			}
			return nil
		},
	})
	f.env = env
	// Registered after startLab's: runs before the lab goes.
	t.Cleanup(func() {
		for _, p := range started {
			p.kill()
		}
	})
	return f
}

// startOrigin (re)starts origin i and returns when it answers.
func (f *faultLab) startOrigin(t *testing.T, i int) time.Time {
	t.Helper()
	p, err := launchOrigin(f.kinds[i], f.env.Lab.Backend, f.addrs[i], f.files, f.state[i])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	f.origins[i] = p
	at, err := originReady(f.kinds[i], f.env.Lab.Backend, f.addrs[i], p, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func (f *faultLab) url() string { return f.env.FrontendURL("http") + "/index.html" }

// faultConfig is a fault scenario's engine configuration: the demo's
// interfaces (IPv4 only), an http frontend at 198.18.1.1:8080 in front of
// the h3 backend "origins" whose servers are addrs, verified against ca.
// backend is extra YAML lines of the backend (indented four spaces),
// frontend extra fields of the http frontend's flow map (", ..."),
// moreFrontends extra frontend lines, top extra top-level lines.
func faultConfig(ca string, addrs []netip.AddrPort, backend, frontend, moreFrontends, top string) string {
	var servers strings.Builder
	for i, a := range addrs {
		fmt.Fprintf(&servers, "      - {name: s%d, address: %q}\n", i, a)
	}
	return fmt.Sprintf(`dataplane: xdp
admin: 127.0.0.1:0
%sinterfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - {name: http, listen: "198.18.1.1:8080", protocol: http, backend: origins%s}
%sbackends:
  - name: origins
    protocol: h3
    tls: {ca: %q}
    health_check: {interval: 500ms, timeout: 400ms, path: /healthz, rise: 2, fall: 2}
    timeouts: {connect: 1s, idle: 30s, request: 10s}
%s    servers:
%s`, top, frontend, moreFrontends, ca, backend, servers.String())
}

// figMs is d in milliseconds for a FIGURES line, -1 when what it
// measures did not happen.
func figMs(happened bool, d time.Duration) int64 {
	if !happened {
		return -1
	}
	return d.Milliseconds()
}

// waitRequests waits (bounded) until the engine has answered n requests
// of the load, so that a fault lands on a running load.
func waitRequests(t *testing.T, env *enginelab.Env, n float64, load *proc) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for env.Engine.Stats().Requests < n {
		if time.Now().After(deadline) || load.exited() {
			load.kill()
			t.Fatalf("the load did not reach %v requests in 10s (%v); %s:\n%s", n, env.Engine.Stats().Requests, load.name, load.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recoveryCase is one way an origin stops answering and comes back.
type recoveryCase struct {
	name   string
	origin originKind
	// late: the origin starts only after the engine; its absence is the
	// fault.
	late bool
	// fault makes the origin stop answering; repair makes it answer again
	// and returns from when the engine's recovery counts.
	fault  func(t *testing.T, f *faultLab)
	repair func(t *testing.T, f *faultLab) time.Time
}

func killOrigin(t *testing.T, f *faultLab)              { f.origins[0].kill() }
func restartOrigin(t *testing.T, f *faultLab) time.Time { return f.startOrigin(t, 0) }

func signalOrigin(sig syscall.Signal) func(*testing.T, *faultLab) {
	return func(t *testing.T, f *faultLab) { f.origins[0].signal(t, sig) }
}

// nftFault adds rule (for the origin's port) in a table of the test's own
// in the backend namespace; its repair flushes the rule.
func nftFault(rule func(port uint16) string) (fault func(*testing.T, *faultLab), repair func(*testing.T, *faultLab) time.Time) {
	fault = func(t *testing.T, f *faultLab) {
		f.nft = newNFTTable(t, f.env.Lab.Backend)
		f.nft.add(t, rule(f.addrs[0].Port()))
	}
	repair = func(t *testing.T, f *faultLab) time.Time {
		f.nft.flush(t)
		return time.Now()
	}
	return fault, repair
}

func setBackendLink(up bool) func(*testing.T, *faultLab) {
	return func(t *testing.T, f *faultLab) {
		if err := f.env.Lab.SetLinkUp(f.env.Lab.BackendLink, up); err != nil {
			t.Fatal(err)
		}
	}
}

// Observation 1: a server whose origin restarts, starts late, answers with
// ICMP unreachable, goes silent or loses its link serves again soon after
// the origin answers, under load (wrk), with one server in the backend so
// that nothing but recovery can serve.
func TestFaultRecovery(t *testing.T) {
	rejectFault, rejectRepair := nftFault(nftRejectUDP)
	dropFault, dropRepair := nftFault(nftDropUDP)
	cases := []recoveryCase{
		{name: "kill-restart", origin: gtlsserver, fault: killOrigin, repair: restartOrigin},
		{name: "kill-restart", origin: caddy, fault: killOrigin, repair: restartOrigin},
		// Origins over TCP (issue 22): the engine reaches nginx over h2,
		// h2o over h2c and HAProxy over HTTP/1.1.
		{name: "kill-restart", origin: nginxH2, fault: killOrigin, repair: restartOrigin},
		{name: "kill-restart", origin: h2oH2C, fault: killOrigin, repair: restartOrigin},
		{name: "kill-restart", origin: haproxyHTTP1, fault: killOrigin, repair: restartOrigin},
		{name: "late-start", origin: gtlsserver, late: true,
			fault: func(*testing.T, *faultLab) {}, repair: restartOrigin},
		{name: "icmp-reject", origin: gtlsserver, fault: rejectFault, repair: rejectRepair},
		{name: "blackhole", origin: gtlsserver, fault: dropFault, repair: dropRepair},
		{name: "sigstop", origin: gtlsserver, fault: signalOrigin(syscall.SIGSTOP),
			repair: func(t *testing.T, f *faultLab) time.Time {
				signalOrigin(syscall.SIGCONT)(t, f)
				return time.Now()
			}},
		{name: "link-down", origin: gtlsserver, fault: setBackendLink(false),
			repair: func(t *testing.T, f *faultLab) time.Time {
				setBackendLink(true)(t, f)
				return time.Now()
			}},
	}
	for _, c := range cases {
		t.Run(c.name+"/"+c.origin.name, func(t *testing.T) {
			t.Parallel()
			f := startFaultLab(t, faultOpts{kinds: []originKind{c.origin}, late: c.late})
			url := f.url()
			if !c.late {
				if _, ok := waitServing(f.env, url, time.Now(), recoverWithin); !ok {
					t.Fatal("the engine did not serve before the fault")
				}
			}
			const loadFor = 8 * time.Second
			load := startWrk(t, f.env, 8, loadFor, url)
			if !c.late {
				waitRequests(t, f.env, 50, load)
			}
			c.fault(t, f)
			waitFailing(t, f.env, url, recoverWithin)
			before := f.env.Engine.Stats()
			since := c.repair(t, f)
			took, ok := waitServing(f.env, url, since, recoverWithin)
			out, _ := load.wait(t, loadFor+30*time.Second)
			fig, err := parseWrk(out)
			if err != nil {
				t.Error(err)
			}
			st := f.env.Engine.Stats()
			t.Logf("FIGURES recovery fault=%s origin=%s recovered=%v recover_ms=%d wrk: %v; backend conns opened %v, connect errors %v (%v after the repair), servers up %d/%d",
				c.name, c.origin.name, ok, figMs(ok, took), fig, st.BackendConnsOpened, st.ConnectErrors,
				st.ConnectErrors-before.ConnectErrors, st.ServersUp, st.Servers)
			if !ok {
				t.Errorf("%s (%s): the engine did not serve again within %v of the origin answering", c.name, c.origin.name, recoverWithin)
			}
		})
	}
}

// Observation 1, second half: idempotent GETs through two servers (caddy
// and gtlsserver) while one is killed: none fails (retried on the other).
func TestFaultKillOneOfTwo(t *testing.T) {
	t.Parallel()
	f := startFaultLab(t, faultOpts{kinds: []originKind{caddy, gtlsserver}})
	url := f.url()
	if _, ok := waitServing(f.env, url, time.Now(), recoverWithin); !ok {
		t.Fatal("the engine did not serve")
	}
	const loadFor = 6 * time.Second
	load := startWrk(t, f.env, 8, loadFor, url)
	waitRequests(t, f.env, 50, load)
	f.origins[1].kill()
	killed := time.Now()
	atKill := f.env.Engine.Stats().Requests
	out, _ := load.wait(t, loadFor+30*time.Second)
	fig, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	st := f.env.Engine.Stats()
	after := st.Requests - atKill
	t.Logf("FIGURES kill-one-of-two origins=caddy+gtlsserver killed=gtlsserver wrk: %v; %v requests in the %v after the kill; retries %v, redispatches %v, aborted %v, servers up %d/%d",
		fig, after, time.Since(killed).Round(time.Millisecond), st.Retries, st.Redispatches, st.RequestsAborted, st.ServersUp, st.Servers)
	if fig.failed() > 0 {
		t.Errorf("%d of %d idempotent GETs failed while one of two servers was killed; want 0", fig.failed(), fig.Requests)
	}
	if after < 20 {
		t.Errorf("only %v requests after the kill: the load did not run through it", after)
	}
}

// tunnelConfig is the configuration of the tunnel scenarios: a tcp
// frontend with the given idle timeout in front of a raw backend of one
// lab origin (enginelab's: raw streams need its ALPN), which splices each
// stream to the backend namespace's TCP target.
func tunnelConfig(idle time.Duration) string {
	return fmt.Sprintf(`dataplane: xdp
admin: 127.0.0.1:0
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - {name: tcp, listen: "198.18.1.1:5201", protocol: tcp, backend: tunnel, timeouts: {idle: %s}}
backends:
  - name: tunnel
    protocol: raw
    servers:
      - {name: origin-a, address: "198.18.2.10:4433"}
`, idle)
}

// stallTargetAddr is where the tunnel scenarios' origin splices to.
const stallTargetAddr = "198.18.2.10:5301"

// Stall modes, sent by the client as a tunnel's first byte.
const (
	stallRead  = 'r' // the far end never reads again
	stallWrite = 'w' // the far end writes without end and never reads
)

// stallEnd is how a 'w' connection of the stall target stopped writing:
// stalled (no progress for 500 ms) or err (the tunnel closed it); last is
// when its last byte went.
type stallEnd struct {
	stalled bool
	err     error
	last    time.Time
}

// startStallTarget runs the far end of the tunnel scenarios in the backend
// namespace. Its sockets have a small receive buffer so that a tunnel
// stalls after little data. ends receives how each 'w' connection stopped
// writing.
func startStallTarget(t *testing.T, ns *lab.NS) (ends <-chan stallEnd) {
	t.Helper()
	var ln net.Listener
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	if err := ns.Do(func() (err error) {
		ln, err = lc.Listen(context.Background(), "tcp", stallTargetAddr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ch := make(chan stallEnd, 16)
	var wg sync.WaitGroup
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				c.Close()
			} else {
				conns = append(conns, c)
				wg.Go(func() { serveStall(c, ch) })
			}
			mu.Unlock()
		}
	})
	return ch
}

func serveStall(c net.Conn, ends chan<- stallEnd) {
	mode := make([]byte, 1)
	if _, err := io.ReadFull(c, mode); err != nil || mode[0] != stallWrite {
		return // stallRead: hold the connection, read nothing, until cleanup
	}
	buf := make([]byte, 64<<10)
	last := time.Now()
	for {
		c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Write(buf)
		if n > 0 {
			last = time.Now()
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			if n > 0 {
				continue
			}
			report(ends, stallEnd{stalled: true, last: last})
			return // stop writing; hold the connection until cleanup
		}
		if err != nil {
			report(ends, stallEnd{err: err, last: last})
			return
		}
	}
}

// report sends e unless nobody listens any more (the channel is full).
func report(ends chan<- stallEnd, e stallEnd) {
	select {
	case ends <- e:
	default:
	}
}

// writeUntilStalled writes to c until a write makes no progress for
// 500 ms (the tunnel's buffers are full) or fails (the engine cut the
// tunnel first), bounded in bytes and time. It returns the bytes written,
// when the last one went, and the write error if one ended it.
func writeUntilStalled(t *testing.T, c net.Conn) (int64, time.Time, error) {
	t.Helper()
	buf := make([]byte, 64<<10)
	var total int64
	last := time.Now()
	deadline := last.Add(15 * time.Second)
	for total < 512<<20 && time.Now().Before(deadline) {
		c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Write(buf)
		total += int64(n)
		if n > 0 {
			last = time.Now()
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			if n == 0 {
				return total, last, nil
			}
			continue
		}
		if err != nil {
			return total, last, err
		}
	}
	t.Fatalf("the tunnel took %d bytes in %v without stalling", total, time.Since(deadline.Add(-15*time.Second)))
	return 0, time.Time{}, nil
}

// waitTunnelsEnded waits until the engine counted n finished tunnels (it
// counts a tunnel once every goroutine of its splice returned) and
// returns when, or false after limit.
func waitTunnelsEnded(env *enginelab.Env, n float64, limit time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if env.Engine.Stats().Tunnels >= n {
			return time.Now(), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Time{}, false
}

// dialTunnel opens a client connection to the tcp frontend and sends the
// stall mode.
func dialTunnel(t *testing.T, env *enginelab.Env, mode byte) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := env.Dial(ctx, "tcp", strings.TrimPrefix(env.FrontendURL("tcp"), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte{mode}); err != nil {
		t.Fatal(err)
	}
	return c
}

// Observation 2: a tunnel whose far end (or whose client) stops reading is
// cut by the frontend idle timeout and every goroutine of it ends; a drain
// with such a tunnel in flight returns within its deadline + 1 s.
func TestFaultTunnelStall(t *testing.T) {
	const idle = time.Second
	t.Run("far-end-stops-reading", func(t *testing.T) {
		t.Parallel()
		env := startLab(t, "xdp", enginelab.Options{Config: tunnelConfig(idle), RawTarget: stallTargetAddr})
		startStallTarget(t, env.Lab.Backend)
		c := dialTunnel(t, env, stallRead)
		n, last, werr := writeUntilStalled(t, c)
		ended, ok := waitTunnelsEnded(env, 1, idle+recoverWithin)
		// The client sees its connection end too.
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, rerr := io.Copy(io.Discard, c)
		t.Logf("FIGURES tunnel-stall direction=client-to-far-end idle=%v bytes_before_stall=%d write_err=%v ended=%v cut_after_ms=%d client_read=%v",
			idle, n, werr, ok, figMs(ok, ended.Sub(last)), rerr)
		if !ok {
			t.Errorf("a tunnel whose far end stopped reading was not ended within the idle timeout (%v) + %v", idle, recoverWithin)
		}
		if ne, isNet := rerr.(net.Error); isNet && ne.Timeout() {
			t.Errorf("the client's connection of a stalled tunnel is still open after the idle timeout")
		}
	})
	t.Run("client-stops-reading", func(t *testing.T) {
		t.Parallel()
		env := startLab(t, "xdp", enginelab.Options{Config: tunnelConfig(idle), RawTarget: stallTargetAddr})
		ends := startStallTarget(t, env.Lab.Backend)
		dialTunnel(t, env, stallWrite) // and never read
		var end stallEnd
		select {
		case end = <-ends:
		case <-time.After(15 * time.Second):
			t.Fatal("the far end's writes neither stalled nor failed in 15s")
		}
		last := end.last
		ended, ok := waitTunnelsEnded(env, 1, idle+recoverWithin)
		t.Logf("FIGURES tunnel-stall direction=far-end-to-client idle=%v far_end_stalled=%v far_end_err=%v ended=%v cut_after_ms=%d",
			idle, end.stalled, end.err, ok, figMs(ok, ended.Sub(last)))
		if !ok {
			t.Errorf("a tunnel whose client stopped reading was not ended within the idle timeout (%v) + %v", idle, recoverWithin)
		}
	})
	t.Run("shutdown-with-stalled-tunnel", func(t *testing.T) {
		t.Parallel()
		// The idle timeout is long: only the drain deadline can end it.
		env := startLab(t, "xdp", enginelab.Options{Config: tunnelConfig(time.Minute), RawTarget: stallTargetAddr})
		startStallTarget(t, env.Lab.Backend)
		c := dialTunnel(t, env, stallRead)
		if _, _, err := writeUntilStalled(t, c); err != nil {
			t.Fatalf("the tunnel failed before it stalled, with a 1 minute idle timeout: %v", err)
		}
		const drain = time.Second
		ctx, cancel := context.WithTimeout(context.Background(), drain)
		defer cancel()
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- env.Engine.Shutdown(ctx) }()
		var err error
		var took time.Duration
		returned := false
		select {
		case err = <-done:
			took, returned = time.Since(start), true
		case <-time.After(drain + recoverWithin):
		}
		t.Logf("FIGURES shutdown-stalled-tunnel drain=%v returned=%v took_ms=%d err=%v", drain, returned, figMs(returned, took), err)
		switch {
		case !returned:
			t.Errorf("Shutdown with a %v drain deadline and a stalled tunnel has not returned after %v", drain, drain+recoverWithin)
		case took > drain+time.Second:
			t.Errorf("Shutdown took %v; want at most the drain deadline %v + 1s", took, drain)
		}
	})
}

// Observation 3: many concurrent requests from churning clients against a
// backend whose connections carry few streams and whose pool keeps few
// idle ones must not turn into a dial storm: the backend connections
// opened stay near what the concurrency needs, and no request gets a 5xx.
//
// It runs alone (not parallel): its figures are about handshakes and
// health-check timeouts, which other tests' load on a small machine would
// distort.
func TestFaultDialStorm(t *testing.T) {
	const (
		clients, streams = 16, 32 // h2load -c -m
		requests         = 8192   // h2load -n
		maxStreams       = 50     // reuse.max_streams
		servers          = 2      // gtlsserver origins
		loadLimit        = 90 * time.Second
	)
	f := startFaultLab(t, faultOpts{
		kinds:   []originKind{gtlsserver, gtlsserver},
		backend: fmt.Sprintf("    reuse: {policy: aggressive, max_idle: 2, max_streams: %d}\n", maxStreams),
	})
	if _, ok := waitServing(f.env, f.url(), time.Now(), recoverWithin); !ok {
		t.Fatal("the engine did not serve")
	}
	before := f.env.Engine.Stats()
	start := time.Now()
	// http:// makes h2load speak h2c with prior knowledge.
	out, err := runIn(t, f.env.StartClient, loadLimit, "h2load", "-n", strconv.Itoa(requests),
		"-c", strconv.Itoa(clients), "-m", strconv.Itoa(streams), "-t", "1", "-T", "30", f.url())
	took := time.Since(start)
	if err != nil {
		t.Fatalf("h2load: %v\n%s", err, out)
	}
	fig, total, fivexx, err := parseH2load(out)
	if err != nil {
		t.Fatal(err)
	}
	st := f.env.Engine.Stats()
	opened := st.BackendConnsOpened - before.BackendConnsOpened
	// Every worker may need enough connections to give each concurrent
	// request a stream on every server: the most a pool that waits for
	// credit instead of dialling should open (issue 17: servers x workers
	// plus replacements; the issue saw 321-675).
	need := (clients*streams + servers*maxStreams - 1) / (servers * maxStreams)
	base := float64(servers * st.Workers * need)
	// Replacements: max_idle 2 closes connections whenever the load dips
	// (h2load's clients finish at different times), and the next rise
	// dials again. Each is counted as an eviction, and on a loaded machine
	// the load dips often; a storm (a dial per request: 445-657 at
	// 16962ad, each evicted in turn) would dial far beyond them, so at
	// most twice the base in replacements.
	replaced := float64(st.Reuse.Evictions - before.Reuse.Evictions)
	bound := base + min(replaced, 2*base)
	t.Logf("FIGURES dial-storm h2load -c%d -m%d -n%d: %v in %v; 5xx=%d; backend conns opened %v (%.1f per 1000 requests, bound %v = servers %d x workers %d x %d + %v replacements of idle-limit evictions), connect errors %v, servers up %d/%d, reuse %+v",
		clients, streams, requests, fig, took.Round(time.Millisecond), fivexx, opened, 1000*opened/float64(max(1, fig.Requests)), bound, servers, st.Workers, need, min(replaced, 2*base),
		st.ConnectErrors-before.ConnectErrors, st.ServersUp, st.Servers, st.Reuse)
	if fig.failed() > 0 || fig.Requests != total {
		t.Errorf("%d of %d requests answered 5xx (%d 4xx or 5xx), %d errored or timed out, %d done", fivexx, total, fig.Non2xx, fig.Errors, fig.Requests)
	}
	if opened > bound {
		t.Errorf("%v backend connections opened for %d requests; want at most %v", opened, requests, bound)
	}
	if st.ServersUp != st.Servers {
		t.Errorf("%d of %d healthy servers marked down by the load", st.Servers-st.ServersUp, st.Servers)
	}
}

// slowFigures are a slowhttptest run's results: from its -g CSV, the
// most connections it held at once and the counts in its last row; from
// its output, the second it ended on and why ("No open connections left"
// when the server closed every one of them before the time limit, "Hit
// test time limit" otherwise).
type slowFigures struct {
	peakConnected, closed, connected int
	endedOn                          int
	exit                             string
}

var (
	ansiEscape  = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")
	slowEnded   = regexp.MustCompile(`Test ended on (\d+)\w* second`)
	slowExitMsg = regexp.MustCompile(`Exit status:\s*([^\n]+)`)
)

// parseSlow reads slowhttptest's statistics CSV ("Seconds,Closed,Pending,
// Connected,Service Available") and its output.
func parseSlow(csv []byte, out string) (slowFigures, error) {
	var f slowFigures
	lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "Seconds,Closed,Pending,Connected") {
		return f, fmt.Errorf("unexpected slowhttptest CSV:\n%s", csv)
	}
	n := func(s string) int { v, _ := strconv.Atoi(strings.TrimSpace(s)); return v }
	for _, l := range lines[1:] {
		row := strings.Split(l, ",")
		if len(row) < 4 {
			return f, fmt.Errorf("short slowhttptest CSV row %q", l)
		}
		f.closed, f.connected = n(row[1]), n(row[3])
		f.peakConnected = max(f.peakConnected, f.connected)
	}
	out = ansiEscape.ReplaceAllString(out, "")
	m, e := slowEnded.FindStringSubmatch(out), slowExitMsg.FindStringSubmatch(out)
	if m == nil || e == nil {
		return f, fmt.Errorf("no end of test in slowhttptest output:\n%s", out)
	}
	f.endedOn, f.exit = n(m[1]), strings.TrimSpace(e[1])
	return f, nil
}

// clientConns is the engine's open client connections on frontend.
func clientConns(t *testing.T, env *enginelab.Env, frontend string) float64 {
	t.Helper()
	v, _ := metricSum(metricsText(t, env), regexp.MustCompile(`^xdpnet_client_connections$`), fmt.Sprintf(`frontend=%q`, frontend))
	return v
}

// Observation 4: slow request bodies (slowhttptest -B, 1000 connections
// opened over the attack) are cut by the frontend's body timeout while
// legitimate clients (curl, one connection each) keep succeeding.
func TestFaultSlowBody(t *testing.T) {
	t.Parallel()
	const (
		slowConns = 1000 // slowhttptest -c, opened at slowRate a second
		slowRate  = 125
		slowFor   = 8   // seconds (slowhttptest -l): slowConns/slowRate
		legitMax  = 200 // curl runs, one after the other, while the attack lasts
	)
	needTool(t, "slowhttptest")
	needTool(t, "curl")
	// timeouts.body bounds the wait for each read of a request body;
	// slowhttptest sends a few bytes every 2 s.
	f := startFaultLab(t, faultOpts{kinds: []originKind{gtlsserver}, frontend: ", timeouts: {header: 5s, body: 1s}"})
	url := f.url()
	if _, ok := waitServing(f.env, url, time.Now(), recoverWithin); !ok {
		t.Fatal("the engine did not serve")
	}
	stats := filepath.Join(t.TempDir(), "slow")
	attack := startProc(t, f.env.Lab.Client, nil, "slowhttptest", "-B", "-c", strconv.Itoa(slowConns), "-r", strconv.Itoa(slowRate),
		"-i", "2", "-x", "10", "-s", "8192", "-l", strconv.Itoa(slowFor), "-p", "3", "-g", "-o", stats, "-u", url)
	// The attack is under way once it holds connections.
	deadline := time.Now().Add(recoverWithin)
	for clientConns(t, f.env, "http") < slowRate/2 {
		if time.Now().After(deadline) || attack.exited() {
			t.Fatalf("slowhttptest did not get under way:\n%s", attack.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var legit, failed int
	var firstErr string
	peak := 0.0
	for ; legit < legitMax && !attack.exited(); legit++ {
		out, err := runIn(t, f.env.StartClient, 20*time.Second, "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", url)
		if err != nil || out != "200" {
			failed++
			if firstErr == "" {
				firstErr = fmt.Sprintf("%q, %v", out, err)
			}
		}
		peak = max(peak, clientConns(t, f.env, "http"))
	}
	out, _ := attack.wait(t, slowFor*time.Second+30*time.Second)
	csv, err := os.ReadFile(stats + ".csv")
	if err != nil {
		t.Fatalf("slowhttptest statistics: %v\n%s", err, out)
	}
	sf, err := parseSlow(csv, out)
	if err != nil {
		t.Fatal(err)
	}
	cut, _ := metricSum(metricsText(t, f.env), regexp.MustCompile(`^xdpnet_client_timeouts_total$`), `reason="body"`)
	t.Logf("FIGURES slow-body slowhttptest -B -c%d -r%d -l%d: held at most %d (engine client conns up to %v), ended on second %d: %q (last row: %d closed by the server, %d connected); body timeouts counted %v; curl %d of %d failed (first: %s)",
		slowConns, slowRate, slowFor, sf.peakConnected, peak, sf.endedOn, sf.exit, sf.closed, sf.connected, cut, failed, legit, firstErr)
	// Each curl is a process forked into the client namespace: on a loaded
	// machine a few seconds each. Failures, not the count, are what this
	// measures; a handful is enough to see them.
	if legit < 3 {
		t.Errorf("only %d legitimate requests ran during the attack", legit)
	}
	if failed*100 > legit {
		t.Errorf("%d of %d legitimate requests failed during the attack; want at least 99%% success", failed, legit)
	}
	// Connections opened in the attack's last seconds may still wait for
	// their timeout when it ends; most must have been cut.
	if opened := sf.closed + sf.connected; sf.closed*2 < opened {
		t.Errorf("%d of %d slow-body connections closed by the server during the %ds attack with a 1s body timeout; want most", sf.closed, opened, slowFor)
	}
}

// idleConns are client connections that send nothing, each watched by a
// reader that notes when the engine ends it.
type idleConns struct {
	mu      sync.Mutex
	conns   []net.Conn
	refused int // dials that failed (RST at SYN, or no answer)
	cut     int // connections the engine closed after accepting them
	wg      sync.WaitGroup
}

// openIdle dials n connections to addr from the client namespace, 16 at
// a time (a dial the engine leaves unanswered takes its 2 s timeout), and
// keeps those that connect open and silent.
func openIdle(t *testing.T, env *enginelab.Env, addr string, n int) *idleConns {
	t.Helper()
	ic := &idleConns{}
	t.Cleanup(ic.close)
	slots := make(chan struct{}, 16)
	var dials sync.WaitGroup
	for range n {
		slots <- struct{}{}
		dials.Go(func() {
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c, err := env.Dial(ctx, "tcp", addr)
			cancel()
			ic.mu.Lock()
			defer ic.mu.Unlock()
			if err != nil {
				ic.refused++
				return
			}
			ic.conns = append(ic.conns, c)
			ic.wg.Go(func() { ic.watch(c) })
		})
	}
	dials.Wait()
	return ic
}

// watch notes when the engine closes c.
func (ic *idleConns) watch(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(time.Minute))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return
	}
	if errors.Is(err, net.ErrClosed) {
		return // closed by ic.close
	}
	ic.mu.Lock()
	ic.cut++
	ic.mu.Unlock()
}

// counts returns the dials refused, the connections cut and those held.
func (ic *idleConns) counts() (refused, cut, held int) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	return ic.refused, ic.cut, len(ic.conns) - ic.cut
}

// waitRefused waits until at least n of the connections were refused or
// cut, and returns the counts then (or at the deadline).
func (ic *idleConns) waitRefused(n int, limit time.Duration) (refused, cut, held int) {
	deadline := time.Now().Add(limit)
	for {
		refused, cut, held = ic.counts()
		if refused+cut >= n || time.Now().After(deadline) {
			return refused, cut, held
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (ic *idleConns) close() {
	ic.mu.Lock()
	for _, c := range ic.conns {
		c.Close()
	}
	ic.mu.Unlock()
	ic.wg.Wait()
}

// Observation 5: idle TCP connections beyond a frontend's max_connections,
// and beyond the engine's, are refused (at SYN or right after accept) and
// counted; once they go, the engine serves again.
func TestFaultMaxConnections(t *testing.T) {
	t.Parallel()
	const (
		feLimit     = 30 // frontends[http].max_connections
		globalLimit = 60 // max_connections
		toHTTP      = 80 // idle connections to the limited frontend
		toOther     = 40 // then to the other, limited by what is left globally
	)
	// The header timeout is long enough not to end the idle connections
	// itself.
	f := startFaultLab(t, faultOpts{
		kinds:         []originKind{gtlsserver},
		top:           fmt.Sprintf("max_connections: %d\n", globalLimit),
		frontend:      fmt.Sprintf(", max_connections: %d, timeouts: {header: 1m, idle: 1m}", feLimit),
		moreFrontends: `  - {name: other, listen: "198.18.1.1:8081", protocol: http, backend: origins, timeouts: {header: 1m, idle: 1m}}` + "\n",
	})
	if _, ok := waitServing(f.env, f.url(), time.Now(), recoverWithin); !ok {
		t.Fatal("the engine did not serve")
	}
	host := func(fe string) string { return strings.TrimPrefix(f.env.FrontendURL(fe), "http://") }

	a := openIdle(t, f.env, host("http"), toHTTP)
	aRefused, aCut, aHeld := a.waitRefused(toHTTP-feLimit, recoverWithin)
	b := openIdle(t, f.env, host("other"), toOther)
	wantB := globalLimit - feLimit
	bRefused, bCut, bHeld := b.waitRefused(toOther-wantB, recoverWithin)
	counted, series := metricSum(metricsText(t, f.env), regexp.MustCompile(`^xdpnet_.*(refused|rejected|limit).*_total$`))
	t.Logf("FIGURES max-connections frontend limit %d: %d idle conns -> held %d, refused at SYN %d, cut after accept %d; global limit %d: %d more to another frontend -> held %d, refused %d, cut %d; counted %v in %v",
		feLimit, toHTTP, aHeld, aRefused, aCut, globalLimit, toOther, bHeld, bRefused, bCut, counted, series)
	if aHeld != feLimit {
		t.Errorf("frontend max_connections %d: %d of %d idle connections held; want %d", feLimit, aHeld, toHTTP, feLimit)
	}
	if bHeld != wantB {
		t.Errorf("max_connections %d with %d held elsewhere: %d of %d idle connections held; want %d", globalLimit, aHeld, bHeld, toOther, wantB)
	}
	if excess := float64(aRefused + aCut + bRefused + bCut); counted < excess {
		t.Errorf("%v refused connections counted in /metrics (%v); want at least the %v refused or cut", counted, series, excess)
	}
	// Room again once the idle connections go.
	a.close()
	b.close()
	if took, ok := waitServing(f.env, f.url(), time.Now(), recoverWithin); !ok {
		t.Error("the engine did not serve again after the idle connections closed")
	} else {
		t.Logf("FIGURES max-connections served again %v after the idle connections closed", took.Round(time.Millisecond))
	}
}
