package engine_test

// Third-party components for the privileged lab tests (the fault suite of
// issue 17 and any test that wants them): HTTP/3 origins (gtlsserver from
// ngtcp2-server, caddy), load and attack clients (wrk, h2load,
// slowhttptest), and faults (signals to a process the test started,
// nftables rules in a lab namespace). Every process is started by the test
// in a lab namespace and killed by its PID when the test ends; every
// nftables table is deleted when the test ends, also on failure.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// needTool returns the path of an external tool, or skips t (fails it
// under CI) when the tool is not installed.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if privtest.InCI() {
		t.Fatalf("%s not installed (make deps installs it)", name)
	}
	t.Skipf("%s not installed (make deps installs it)", name)
	return ""
}

// capBuffer keeps the first max bytes a process writes, for the test log;
// it is safe for the process's output copiers and the test to share.
type capBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	max int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// proc is an external process a test started in a lab namespace.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *capBuffer
	done chan struct{} // closed once Wait returned
	err  error         // Wait's result, set before done closes
}

// startProc starts name in ns with env added to the test's environment.
// The process is killed (SIGKILL, by PID; a stopped one dies too) and
// waited for when t ends.
func startProc(t *testing.T, ns *lab.NS, env []string, name string, args ...string) *proc {
	t.Helper()
	p, err := launch(ns, env, needTool(t, name), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	return p
}

// launch starts the program at path in ns; the caller must kill it.
func launch(ns *lab.NS, env []string, path string, args ...string) (*proc, error) {
	p := &proc{name: filepath.Base(path), cmd: exec.Command(path, args...),
		out: &capBuffer{max: 1 << 20}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := ns.Start(p.cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	// os.Process signals its own PID (a pidfd where the kernel has them),
	// never a recycled one.
	_ = p.cmd.Process.Kill()
	<-p.done
}

// signal sends sig to the process, which must still run.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s %v: %v", p.name, sig, err)
	}
}

// wait waits up to limit for the process to exit and returns its output
// and exit error; past limit it kills the process and fails t.
func (p *proc) wait(t *testing.T, limit time.Duration) (string, error) {
	t.Helper()
	select {
	case <-p.done:
		return p.out.String(), p.err
	case <-time.After(limit):
		p.kill()
		t.Fatalf("%s still running after %v; killed. Output:\n%s", p.name, limit, p.out.String())
		return "", nil
	}
}

// exited reports whether the process ended (for a server: crashed).
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// originFiles is what a third-party origin serves and proves itself with:
// a document root and a self-signed certificate, which is also the CA the
// engine verifies the origin with (backends' tls.ca).
type originFiles struct {
	dir, cert, key string
}

// originPage is the size of /index.html in the origins' document root.
const originPage = 1000

func newOriginFiles(t *testing.T, hosts ...string) originFiles {
	t.Helper()
	d := t.TempDir()
	cert, key, err := quicmux.WriteSelfSigned(d, hosts, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	www := filepath.Join(d, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"index.html": bytes.Repeat([]byte("x"), originPage),
		"healthz":    []byte("ok\n"), // the engine's health check path
	} {
		if err := os.WriteFile(filepath.Join(www, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return originFiles{dir: www, cert: cert, key: key}
}

// originKind is one kind of third-party origin: command returns how to run
// it at addr, with state as its private scratch directory. proto is the
// backend protocol the engine reaches it with ("" for h3); origins over
// TCP are in tcporigins_test.go.
type originKind struct {
	name    string
	command func(addr netip.AddrPort, f originFiles, state string) (env, args []string, err error)
	proto   string
}

// get sends one GET to the origin at addr from ns over the kind's
// protocol and returns nil on a 200.
func (k originKind) get(ctx context.Context, ns *lab.NS, addr netip.AddrPort, path string) error {
	if k.proto == "" {
		return h3Get(ctx, ns, addr, path)
	}
	return tcpGet(ctx, ns, k.proto, addr, path)
}

var (
	// gtlsserver is ngtcp2's example server (Debian ngtcp2-server) built
	// on GnuTLS: static files over HTTP/3 only.
	gtlsserver = originKind{name: "gtlsserver", command: gtlsserverCommand}
	// caddy serves HTTP/1.1, h2 and HTTP/3 from one config; admin off.
	caddy = caddyOrigin()
)

// launchOrigin starts an origin of kind k at addr in ns (tools checked by
// the caller with needTool); the caller must kill it.
func launchOrigin(k originKind, ns *lab.NS, addr netip.AddrPort, f originFiles, state string) (*proc, error) {
	env, args, err := k.command(addr, f, state)
	if err != nil {
		return nil, err
	}
	path, err := exec.LookPath(k.name)
	if err != nil {
		return nil, err
	}
	return launch(ns, env, path, args...)
}

func gtlsserverCommand(addr netip.AddrPort, f originFiles, _ string) (env, args []string, err error) {
	return nil, []string{"-q", "-d", f.dir, "--timeout=30s",
		addr.Addr().String(), strconv.Itoa(int(addr.Port())), f.key, f.cert}, nil
}

// caddyOrigin is caddy serving the document root, after routes (caddy
// JSON route objects, tried in order) if any.
func caddyOrigin(routes ...any) originKind {
	return originKind{name: "caddy", command: func(addr netip.AddrPort, f originFiles, state string) ([]string, []string, error) {
		return caddyCommand(addr, f, state, routes)
	}}
}

func caddyCommand(addr netip.AddrPort, f originFiles, state string, routes []any) (env, args []string, err error) {
	// JSON rather than a Caddyfile: no site address, so no host matcher
	// (the engine forwards the client's Host) and no automatic HTTPS; the
	// one TLS policy serves the lab certificate to every ClientHello,
	// including the engine's, which carries no SNI for an IP address.
	// Storage, autosave and home live in state: nothing outside the test.
	cfg := map[string]any{
		"admin":   map[string]any{"disabled": true},
		"storage": map[string]any{"module": "file_system", "root": filepath.Join(state, "data")},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "WARN"}}},
		"apps": map[string]any{
			"http": map[string]any{"servers": map[string]any{"origin": map[string]any{
				"listen":                  []string{addr.String()},
				"protocols":               []string{"h1", "h2", "h3"},
				"automatic_https":         map[string]any{"disable": true},
				"tls_connection_policies": []any{map[string]any{"certificate_selection": map[string]any{"any_tag": []string{"lab"}}}},
				"routes": append(routes, map[string]any{"handle": []any{
					map[string]any{"handler": "vars", "root": f.dir},
					map[string]any{"handler": "file_server"},
				}}),
			}}},
			"tls": map[string]any{"certificates": map[string]any{"load_files": []any{
				map[string]any{"certificate": f.cert, "key": f.key, "tags": []string{"lab"}},
			}}},
		},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, err
	}
	file := filepath.Join(state, "caddy.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return nil, nil, err
	}
	env = []string{"HOME=" + state, "XDG_DATA_HOME=" + filepath.Join(state, "data"), "XDG_CONFIG_HOME=" + filepath.Join(state, "config")}
	return env, []string{"run", "--config", file}, nil
}

// h3Get sends one GET over a fresh HTTP/3 connection from ns (the origin's
// own namespace, over its loopback: no fault rule on the lab veth applies)
// and returns nil on a 200.
func h3Get(ctx context.Context, ns *lab.NS, addr netip.AddrPort, path string) error {
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenUDP("udp", nil)
		return err
	}); err != nil {
		return err
	}
	defer pc.Close()
	tr := &quic.Transport{Conn: pc}
	defer tr.Close()
	h3 := &http3.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return tr.Dial(ctx, net.UDPAddrFromAddrPort(addr), tlsCfg, cfg)
		},
	}
	defer h3.Close()
	return getOK(ctx, h3, "https://"+addr.String()+path)
}

// originReady polls the origin at addr, of kind k, directly until it
// answers, and returns when it first did: the moment from which the
// engine's recovery is measured. It fails if the origin does not answer
// within limit or its process exits.
func originReady(k originKind, ns *lab.NS, addr netip.AddrPort, p *proc, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if p.exited() {
			return time.Time{}, fmt.Errorf("%s at %s exited: %v\n%s", p.name, addr, p.err, p.out.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err = k.get(ctx, ns, addr, "/healthz")
		cancel()
		if err == nil {
			return time.Now(), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("%s at %s did not answer within %v: %w\n%s", p.name, addr, limit, err, p.out.String())
}

// probeGet sends one GET through the engine and returns nil on a 200 with
// the whole body.
func probeGet(c *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return getOK(ctx, c.Transport, url)
}

// getOK sends one GET on rt (nil: http.DefaultTransport) and returns nil on
// a 200 with the whole body.
func getOK(ctx context.Context, rt http.RoundTripper, url string) error {
	if rt == nil {
		rt = http.DefaultTransport
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{resp.StatusCode}
	}
	return nil
}

// waitServing starts a GET through the engine every 50 ms, each bounded by
// 3 s, and returns how long after since (the origin answering again) the
// first one succeeded. Probes overlap, so that one stuck on a dead
// connection does not delay the measure. It returns false if none
// succeeded within limit.
func waitServing(env *enginelab.Env, url string, since time.Time, limit time.Duration) (time.Duration, bool) {
	c := env.HTTPClient(64, false)
	defer c.CloseIdleConnections()
	var first atomic.Int64 // UnixNano of the first success
	var wg sync.WaitGroup
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && first.Load() == 0 {
		wg.Go(func() {
			if probeGet(c, url, 3*time.Second) == nil {
				first.CompareAndSwap(0, time.Now().UnixNano())
			}
		})
		<-tick.C
	}
	wg.Wait()
	if f := first.Load(); f != 0 {
		return time.Unix(0, f).Sub(since), true
	}
	return 0, false
}

// waitFailing polls the engine until a GET fails (an error status or no
// answer within 1.5 s), to confirm that a fault took effect before it is
// repaired. It fails t if every GET succeeds for limit.
func waitFailing(t *testing.T, env *enginelab.Env, url string, limit time.Duration) {
	t.Helper()
	c := env.HTTPClient(1, false)
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if err := probeGet(c, url, 1500*time.Millisecond); err != nil {
			t.Logf("fault took effect: %v", err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("every request still succeeded %v after the fault: the fault did not take effect", limit)
}

// nftTable is an nftables table of the test's own in a lab namespace,
// with one input chain; it is deleted when the test ends.
type nftTable struct {
	ns   *lab.NS
	name string
}

var nftSeq atomic.Uint64

func newNFTTable(t *testing.T, ns *lab.NS) *nftTable {
	t.Helper()
	n := &nftTable{ns: ns, name: fmt.Sprintf("xdpnet_test_%d_%d", os.Getpid(), nftSeq.Add(1))}
	n.run(t, "add", "table", "inet", n.name)
	t.Cleanup(func() { n.run(t, "delete", "table", "inet", n.name) })
	n.run(t, "add", "chain", "inet", n.name, "input", "{ type filter hook input priority 0 ; policy accept ; }")
	return n
}

// add appends a rule (nft syntax) to the input chain.
func (n *nftTable) add(t *testing.T, rule string) {
	t.Helper()
	n.run(t, "add", "rule", "inet", n.name, "input", rule)
}

// flush removes every rule from the input chain.
func (n *nftTable) flush(t *testing.T) {
	t.Helper()
	n.run(t, "flush", "chain", "inet", n.name, "input")
}

func (n *nftTable) run(t *testing.T, args ...string) {
	t.Helper()
	out, err := runIn(t, n.ns.Start, 10*time.Second, "nft", args...)
	if err != nil {
		t.Errorf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Rules that act on what the engine sends to an origin's UDP port (only
// packets arriving on the lab veth: the origin's own loopback probes pass).
func nftDropUDP(port uint16) string {
	return fmt.Sprintf("iifname %q udp dport %d drop", lab.PeerIf, port)
}

func nftRejectUDP(port uint16) string {
	return fmt.Sprintf("iifname %q udp dport %d reject with icmpx type port-unreachable", lab.PeerIf, port)
}

// loadFigures are a load client's results.
type loadFigures struct {
	Requests   int           // completed (any status)
	Non2xx     int           // answered with another status (5xx for h2load)
	Errors     int           // connect, read, write errors and timeouts
	MaxLatency time.Duration // of the completed requests
}

func (f loadFigures) failed() int { return f.Non2xx + f.Errors }

func (f loadFigures) String() string {
	return fmt.Sprintf("requests=%d failed=%d non2xx=%d errors=%d max_latency=%v",
		f.Requests, f.failed(), f.Non2xx, f.Errors, f.MaxLatency)
}

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkLatency  = regexp.MustCompile(`(?m)^\s*Latency\s+\S+\s+\S+\s+(\S+)`)
)

// startWrk starts wrk in the client namespace: one thread, conns
// keep-alive connections, for d (whole seconds: wrk takes no smaller
// unit), each request bounded by 5 s (longer counts as an error).
func startWrk(t *testing.T, env *enginelab.Env, conns int, d time.Duration, url string) *proc {
	t.Helper()
	return startProc(t, env.Lab.Client, nil, "wrk", "-t1", "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", int((d+time.Second-1)/time.Second)), "--timeout", "5s", url)
}

// parseWrk reads wrk's summary.
func parseWrk(out string) (loadFigures, error) {
	var f loadFigures
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return f, fmt.Errorf("no request count in wrk output:\n%s", out)
	}
	f.Requests, _ = strconv.Atoi(m[1])
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			f.Errors += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		f.Non2xx, _ = strconv.Atoi(m[1])
	}
	if m := wrkLatency.FindStringSubmatch(out); m != nil {
		f.MaxLatency = parseToolDuration(m[1])
	}
	return f, nil
}

// parseToolDuration reads wrk's and h2load's durations ("12.34ms",
// "1.20s", "456.00us", "1.50m"); 0 if unreadable.
func parseToolDuration(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0
	}
	return d
}

var (
	h2loadReqs   = regexp.MustCompile(`requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2loadStatus = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2loadTime   = regexp.MustCompile(`(?m)^time for request:\s+\S+\s+(\S+)`)
)

// parseH2load reads h2load's summary: Requests counts those done, Non2xx
// the 4xx and 5xx (of which fivexx the 5xx), Errors those errored or
// timed out; total is the number asked for.
func parseH2load(out string) (f loadFigures, total, fivexx int, err error) {
	m := h2loadReqs.FindStringSubmatch(out)
	s := h2loadStatus.FindStringSubmatch(out)
	if m == nil || s == nil {
		return f, 0, 0, fmt.Errorf("no request summary in h2load output:\n%s", out)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	total, f.Requests = n(m[1]), n(m[2])
	f.Errors = n(m[5]) + n(m[6])
	f.Non2xx, fivexx = n(s[3])+n(s[4]), n(s[4])
	if m := h2loadTime.FindStringSubmatch(out); m != nil {
		f.MaxLatency = parseToolDuration(m[1])
	}
	return f, total, fivexx, nil
}

// metricsText is the engine's /metrics page.
func metricsText(t *testing.T, env *enginelab.Env) string {
	t.Helper()
	addr := env.Engine.AdminAddr()
	if addr == nil {
		t.Fatal("admin endpoint off")
	}
	// A hang, not a slow answer: on a loaded CI machine one scrape beside
	// a test's load took more than 5 s.
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricSum adds up the samples of every series whose name matches re and
// whose labels contain every one of labels (such as `frontend="http"`),
// and returns them with the matching series.
func metricSum(text string, re *regexp.Regexp, labels ...string) (float64, []string) {
	var total float64
	var names []string
next:
	for _, l := range strings.Split(text, "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		name, rest := l[:i], l[i+1:]
		base, _, _ := strings.Cut(name, "{")
		if !re.MatchString(base) {
			continue
		}
		for _, lb := range labels {
			if !strings.Contains(name, lb) {
				continue next
			}
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
			total += v
			names = append(names, name)
		}
	}
	return total, names
}
