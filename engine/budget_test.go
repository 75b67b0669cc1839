package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// budgetBody is the size of the page the budget test fetches: several
// 32 KiB chunks, so that each response holds its payload buffer for a
// while.
const budgetBody = 200 << 10

// TestMemoryBudgetExhausted runs wrk (64 keep-alive connections, 3 s,
// bodies checked: startBudgetLab), then h2load (128 h2c streams), through the http frontend in front of
// gtlsserver (HTTP/3) with buffers.memory at the UMEM plus 4 payload
// buffers (and room for the 64 connections' TCP reservations),
// buffers.wait at 100ms and netstack's TCP buffers fixed at 4 KiB:
// requests wait for buffers and some are refused with 503. Then: no lost or damaged byte, every 503
// counted (xdpnet_requests_total{result="no_buffer"}), the pool never above
// its limit, every buffer back (conservation: gets == puts, none in use,
// nobody waiting), curl served in full once the load is gone (recovery,
// no deadlock), and every buffer back after a drain under the same load.
func TestMemoryBudgetExhausted(t *testing.T) {
	const payload = budgetPayload
	// Room for wrk's 64 connections' TCP reservations beside the 4
	// payload buffers. Their buffers are fixed at netstack's 4 KiB floor
	// (8 KiB reserved each, as much as a parked connection): the room
	// they leave when they close, which the payload buffers may use, is
	// small. They wait for their reservations (accept_wait 30s) rather
	// than be refused: this test is about the requests.
	const tcpRoom = 64 * 8 << 10
	f, url, script := startBudgetLab(t, fmt.Sprintf("buffers: {memory: %d, wait: 100ms, accept_wait: 30s, tcp_receive: {default: 4KiB, max: 4KiB}, tcp_send: {default: 4KiB, max: 4KiB}, %s}\n", budgetUMEM+payload+tcpRoom+budgetQUICRoom, budgetQUIC))
	load := startProc(t, f.env.Lab.Client, nil, "wrk", "-t1", "-c64", "-d3s", "--timeout", "5s", "-s", script, url)
	out, err := load.wait(t, 30*time.Second)
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	figs, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "BADBODY") || strings.Contains(out, "BADSTATUS") || figs.Errors != 0 {
		t.Errorf("wrk saw damaged bodies, other statuses or errors: %v\n%s", figs, out)
	}
	// A request is counted after its response is written: wait for the
	// client's connections to be gone (a connection is counted closed
	// after its handler returned).
	quiet := func() {
		testutil.WaitFor(t, "the client connections to close", func() bool {
			e := f.env.Engine.Stats().Engine
			return e.Frontends["http"].ClientConnections == 0 && e.Payload.InUse == 0
		})
	}
	noBuffer := regexp.MustCompile(`^xdpnet_requests_total$`)
	quiet()
	refused, _ := metricSum(metricsText(t, f.env), noBuffer, `result="no_buffer"`)
	// wrk does not count the responses in flight when it stops: at most
	// one per connection.
	if int(refused) < figs.Non2xx || int(refused) > figs.Non2xx+64 {
		t.Errorf("wrk got %d non-2xx responses, the engine counted %v no_buffer refusals", figs.Non2xx, refused)
	}
	s := f.env.Engine.Stats().Engine.Payload
	if s.Waits == 0 {
		t.Errorf("no request waited for a payload buffer: the budget was not exhausted (%+v)", s)
	}
	if s.LimitBytes != payload+tcpRoom+budgetQUICRoom || s.LiveBytes > s.LimitBytes {
		t.Errorf("payload pool above its limit: %+v", s)
	}

	// h2load: 128 concurrent h2c streams on 4 connections, against the
	// 4 buffers and the room wrk's closed connections gave back to the
	// budget (60 reservations of 8 KiB: 15 buffers). Every stream ends
	// with a 200 or a counted 503, none with an error.
	needTool(t, "h2load")
	out, err = runIn(t, f.env.StartClient, 60*time.Second, "h2load", "-n", "1000", "-c", "4", "-m", "32", "-t", "1", "-T", "30", url)
	if err != nil {
		t.Fatalf("h2load: %v\n%s", err, out)
	}
	h2figs, total, fivexx, err := parseH2load(out)
	if err != nil {
		t.Fatal(err)
	}
	quiet()
	refusedAfter, _ := metricSum(metricsText(t, f.env), noBuffer, `result="no_buffer"`)
	if h2figs.Requests != total || h2figs.Errors != 0 || h2figs.Non2xx != fivexx || int(refusedAfter-refused) != fivexx {
		t.Errorf("h2load: %v, %d of %d 5xx; the engine counted %v no_buffer refusals\n%s", h2figs, fivexx, total, refusedAfter-refused, out)
	}

	// Recovery: without the load, every request is served in full.
	var args []string
	for range 10 {
		args = append(args, "-o", "/dev/null", url)
	}
	c := startProc(t, f.env.Lab.Client, nil, "curl", append([]string{"-s", "--max-time", "10", "-w", "%{http_code} %{size_download}\n"}, args...)...)
	cout, err := c.wait(t, 30*time.Second)
	if want := strings.Repeat(fmt.Sprintf("200 %d\n", budgetBody), 10); err != nil || cout != want {
		t.Errorf("curl after the load: %v\n%s", err, cout)
	}
	s = f.env.Engine.Stats().Engine.Payload
	if s.InUse != 0 || s.Waiting != 0 || s.Gets != s.Puts {
		t.Errorf("payload buffers not all back after the load: %+v", s)
	}
	// The backend's QUIC datagrams came through the UDP fast path's
	// pooled buffers: all back once the sockets have read them (health
	// checks keep some traffic going, hence the poll).
	testutil.WaitFor(t, "datagram buffers back", func() bool { return f.env.Engine.Stats().Net.DatagramBuffers.InUse == 0 })
	if d := f.env.Engine.Stats().Net.DatagramBuffers; d.Gets == 0 {
		t.Errorf("no datagram went through the fast path's buffers: %+v", d)
	}
	if n, _ := metricSum(metricsText(t, f.env), regexp.MustCompile(`^xdpnet_payload_buffer_waits_total$`)); n != float64(s.Waits) {
		t.Errorf("/metrics waits %v, /stats %d", n, s.Waits)
	}

	// Drain under load: requests waiting for a buffer and those holding
	// one finish (or get their 503), and every buffer is back afterwards.
	drainLoad := startProc(t, f.env.Lab.Client, nil, "wrk", "-t1", "-c64", "-d10s", "--timeout", "5s", "-s", script, url)
	testutil.WaitFor(t, "requests waiting for a buffer", func() bool { return f.env.Engine.Stats().Engine.Payload.Waiting > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.env.Engine.Shutdown(ctx); err != nil {
		t.Errorf("drain: %v", err)
	}
	drainLoad.kill()
	if strings.Contains(drainLoad.out.String(), "BADBODY") {
		t.Errorf("a damaged body during the drain:\n%s", drainLoad.out.String())
	}
	if d := f.env.Engine.Stats().Engine.Payload; d.InUse != 0 || d.Waiting != 0 || d.Gets != d.Puts {
		t.Errorf("payload buffers not all back after the drain: %+v", d)
	}
	t.Logf("FIGURES budget payload_limit=%dKiB wrk: %v, refused %v; h2load: %v, refused %d; waits=%d wait_failures=%d wait_s=%.3f allocs=%d",
		payload>>10, figs, refused, h2figs, fivexx, s.Waits, s.WaitFailures, s.WaitSeconds, s.Allocs)
}

// The budget tests' engine: two ports of the default frames, and 4 payload
// buffers beyond them when bounded.
const (
	budgetUMEM    = 2 * 8192 * 2048
	budgetPayload = 4 * config.PayloadBufferSize
)

// startBudgetLab starts the engine with top (extra top-level YAML) in
// front of gtlsserver serving a budgetBody page, and returns the page's
// URL through the http frontend and a wrk Lua script that reports every
// 200 whose body is not the page byte for byte (BADBODY) and every status
// other than 200 and 503 (BADSTATUS).
func startBudgetLab(t *testing.T, top string) (*faultLab, string, string) {
	t.Helper()
	needTool(t, "wrk")
	needTool(t, "curl")
	f := startFaultLab(t, faultOpts{kinds: []originKind{gtlsserver}, top: top})
	page := bytes.Repeat([]byte("0123456789abcdef"), budgetBody/16)
	if err := os.WriteFile(filepath.Join(f.files.dir, "big.bin"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "check.lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(`
local want = string.rep("0123456789abcdef", %d)
response = function(status, headers, body)
  if status == 200 and body ~= want then
    io.write("BADBODY " .. #body .. "\n")
  elseif status ~= 200 and status ~= 503 then
    io.write("BADSTATUS " .. status .. "\n")
  end
end
`, budgetBody/16)), 0o644); err != nil {
		t.Fatal(err)
	}
	return f, f.env.FrontendURL("http") + "/big.bin", script
}

// TestMemoryBudgetGoodput runs the same load (wrk, 64 connections, 2 s,
// bodies checked) through an engine with the default budget and through
// one with 6 payload buffers, a tenth of what the load wants, beside its
// connections' TCP reservations, and the default buffers.wait (5s): the
// bounded engine makes requests wait, not fail: every response a 200 with
// its body intact. Its goodput beside the
// unbounded one's, measured in the same run, is logged (FIGURES), not
// asserted: the machine is noisy.
func TestMemoryBudgetGoodput(t *testing.T) {
	var mbps [2]float64
	// Both engines fix netstack's TCP buffers at their 4 KiB floor, the
	// size of a parked connection's: the bounded one has room for the 64
	// connections' reservations (8 KiB each) beside the 6 payload
	// buffers, and a connection that parks gives none of it back to them.
	// Its connections wait for their reservations as long as the load
	// lasts (accept_wait 30s): the room the first transfers' buffers took
	// comes back to them as those end. Both give the backend's QUIC
	// connections 32 KiB windows (budgetQUIC), for which the bounded one
	// has room: their goodput is lower than with the default windows.
	const tcp = "tcp_receive: {default: 4KiB, max: 4KiB}, tcp_send: {default: 4KiB, max: 4KiB}, " + budgetQUIC
	const tcpRoom = 64 * 8 << 10
	for i, top := range []string{"buffers: {" + tcp + "}\n", fmt.Sprintf("buffers: {memory: %d, accept_wait: 30s, %s}\n", budgetUMEM+tcpRoom+budgetQUICRoom+6*config.PayloadBufferSize, tcp)} {
		t.Run([]string{"unbounded", "bounded"}[i], func(t *testing.T) {
			f, url, script := startBudgetLab(t, top)
			start := time.Now()
			load := startProc(t, f.env.Lab.Client, nil, "wrk", "-t1", "-c64", "-d2s", "--timeout", "5s", "-s", script, url)
			out, err := load.wait(t, 30*time.Second)
			elapsed := time.Since(start)
			figs, perr := parseWrk(out)
			if err != nil || perr != nil {
				t.Fatalf("wrk: %v %v\n%s", err, perr, out)
			}
			if strings.Contains(out, "BADBODY") || strings.Contains(out, "BADSTATUS") || figs.failed() != 0 || figs.Requests == 0 {
				t.Errorf("wrk: %v\n%s", figs, out)
			}
			mbps[i] = float64(figs.Requests) * budgetBody / elapsed.Seconds() / 1e6
			if s := f.env.Engine.Stats().Engine.Payload; i == 1 && (s.Waits == 0 || s.LiveBytes > s.LimitBytes) {
				t.Errorf("bounded: no waits, or more than the budget: %+v", s)
			}
			t.Logf("%s: wrk %v, %.1f MB/s of bodies", []string{"unbounded", "bounded"}[i], figs, mbps[i])
		})
	}
	if mbps[0] > 0 {
		t.Logf("FIGURES budget-goodput unbounded=%.1fMB/s bounded_6_buffers=%.1fMB/s ratio=%.2f", mbps[0], mbps[1], mbps[1]/mbps[0])
	}
}
