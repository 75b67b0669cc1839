package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/engine/stats"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// The connection budget test's engine: TCP buffers fixed at 64 KiB each
// way (a reservation of 128 KiB per client connection), and room in
// buffers.memory beyond the UMEM for 8 connections and 4 payload buffers,
// and for the backend QUIC connections.
const (
	connBudgetReservation = 128 << 10
	connBudgetRoom        = 8*connBudgetReservation + 4*config.PayloadBufferSize + connBudgetQUICRoom
	// Room for the demo's backend QUIC connections (budgetQUIC): two h3
	// origins' health checks and pooled connections, the tunnel's, a
	// health check's of the raw backend.
	connBudgetQUICRoom = 8 * budgetQUICConn
	connBudgetBody     = 20000
)

// TestMemoryBudgetRefusesConnections checks first that a parked
// keep-alive connection (curl) holds its parked reservation, then spends
// the budget with real clients: iperf3 (two streams and its control connection) through the tcp
// frontend's tunnel to an iperf3 server, then wrk (16 keep-alive
// connections, 2 s, bodies checked by a Lua script) through the http
// frontend, with room for 8 connections' TCP reservations. New
// connections wait buffers.accept_wait (200ms) for room, then are refused
// and counted (xdpnet_connections_refused_total{reason="budget"}); the
// admitted ones are served in full, iperf3 loses no byte, the budget is
// never exceeded, and once the load is gone curl is served (recovery).
// Conservation: after the load and again after a drain under load, every
// reservation and payload buffer is back and the UMEM frames in use are
// back to their idle figure.
func TestMemoryBudgetRefusesConnections(t *testing.T) {
	needTool(t, "wrk")
	needTool(t, "curl")
	needTool(t, "iperf3")
	const demoBuffers = "buffers: {frames: 8192, frame_size: 2048, cache: 256, memory: 0, wait: 5s}"
	if !strings.Contains(config.Demo, demoBuffers) {
		t.Fatalf("config.Demo has no line %q to replace", demoBuffers)
	}
	cfg := strings.Replace(config.Demo, demoBuffers, fmt.Sprintf("buffers: {memory: %d, wait: 5s, accept_wait: 200ms, "+
		"tcp_receive: {default: 64KiB, max: 64KiB}, tcp_send: {default: 64KiB, max: 64KiB}, %s}", budgetUMEM+connBudgetRoom, budgetQUIC), 1)
	env := startLab(t, "xdp", enginelab.Options{Config: cfg, RawTarget: "198.18.2.10:5201"})
	stats := func() (tcp int64, s struct{ waits, fails uint64 }, payloadInUse int64) {
		e := env.Engine.Stats().Engine
		return e.TCP.ReservedBytes, struct{ waits, fails uint64 }{e.TCP.Waits, e.TCP.WaitFailures}, e.Payload.InUse
	}
	if r, _, _ := stats(); r != 0 {
		t.Fatalf("%d bytes reserved before any connection", r)
	}
	url := fmt.Sprintf("%s/bytes/%d", env.FrontendURL("http"), connBudgetBody)
	// umemBack reports whether every UMEM frame is free, in a fill ring
	// (as many as at idle) or on a TX ring awaiting its completion (a
	// port reaps completions at its next send: as many as the frames it
	// placed on the TX ring minus those it reaped), and describes them.
	idleFill := map[string]int64{}
	umemBack := func() (bool, string) {
		ok, desc := true, ""
		for _, is := range env.Engine.Stats().Net.Interfaces {
			for _, q := range is.Queues {
				onRing := int64(q.Port.TxPackets - q.Port.TxCompleted)
				var owned int64
				for _, o := range q.UMEM.Owners {
					owned += o.InUse
					switch {
					case strings.HasPrefix(o.Owner, "nic rx"):
						if _, seen := idleFill[o.Owner]; !seen {
							idleFill[o.Owner] = o.InUse
						}
						ok = ok && o.InUse == idleFill[o.Owner]
					case strings.HasPrefix(o.Owner, "nic tx"):
						ok = ok && o.InUse == onRing
					}
					desc += fmt.Sprintf("[%s: %d] ", o.Owner, o.InUse)
				}
				ok = ok && q.UMEM.InUse == owned
				desc += fmt.Sprintf("(in use %d, on the TX ring %d) ", q.UMEM.InUse, onRing)
			}
		}
		return ok, desc
	}
	if ok, desc := umemBack(); !ok {
		t.Fatalf("UMEM at idle: %s", desc)
	}

	// A keep-alive connection parked between its requests (curl, 4
	// requests at 2/s on one connection) reserves its 4 KiB parked
	// buffers each way, and gets its full ones back at each resume.
	parked := startProc(t, env.Lab.Client, nil, "curl", "-s", "--max-time", "10", "--rate", "2/s",
		"-w", "%{http_code} %{size_download} %{num_connects}\n", "-o", "/dev/null", url, "-o", "/dev/null", url, "-o", "/dev/null", url, "-o", "/dev/null", url)
	testutil.WaitFor(t, "curl's connection parked", func() bool {
		r, _, _ := stats()
		return r == 8<<10
	})
	pout, err := parked.wait(t, 30*time.Second)
	if want := fmt.Sprintf("200 %d 1\n", connBudgetBody) + strings.Repeat(fmt.Sprintf("200 %d 0\n", connBudgetBody), 3); err != nil || pout != want {
		t.Errorf("curl on one connection: %v\n%s", err, pout)
	}
	testutil.WaitFor(t, "curl's connection gone", func() bool { r, _, _ := stats(); return r == 0 })
	if s := env.Engine.Stats().Engine.TCP; s.SmallResumes != 0 {
		t.Errorf("a parked connection resumed without its full buffers on an idle budget: %+v", s)
	}

	startProc(t, env.Lab.Backend, nil, "iperf3", "-s", "-B", "198.18.2.10", "-p", "5201")
	testutil.WaitFor(t, "iperf3 -s listening", func() bool {
		return env.Lab.Backend.Do(func() error {
			c, err := net.DialTimeout("tcp", "198.18.2.10:5201", time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	})
	iperf := startProc(t, env.Lab.Client, nil, "iperf3", "-c", "198.18.1.1", "-p", "5201", "-t", "4", "-P", "2", "-J", "--connect-timeout", "3000")
	testutil.WaitFor(t, "iperf3's three connections reserved", func() bool {
		r, _, _ := stats()
		return r >= 3*connBudgetReservation
	})

	script := filepath.Join(t.TempDir(), "check.lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(`
local t = {}
for i = 0, %d - 1 do t[#t + 1] = string.char(97 + i %% 26) end
local want = table.concat(t)
response = function(status, headers, body)
  if status ~= 200 then
    io.write("BADSTATUS " .. status .. "\n")
  elseif body ~= want then
    io.write("BADBODY " .. #body .. "\n")
  end
end
`, connBudgetBody)), 0o644); err != nil {
		t.Fatal(err)
	}
	// wrk's 4 connections are admitted (room for 8 with iperf3's 3:
	// reservations leave 2 of the 4 payload buffers), then h2load's 12
	// h2c connections (never parked: each holds its reservation while it
	// lives) find room for a few at most.
	wrk := startProc(t, env.Lab.Client, nil, "wrk", "-t1", "-c4", "-d3s", "--timeout", "5s", "-s", script, url)
	testutil.WaitFor(t, "wrk's connections reserved", func() bool {
		r, _, _ := stats()
		return r >= 7*connBudgetReservation
	})
	h2 := startProc(t, env.Lab.Client, nil, "h2load", "-c", "12", "-m", "1", "-t", "1", "-D", "2", "-T", "5", url)
	h2out, _ := h2.wait(t, 30*time.Second) // its exit status counts the refused clients
	h2figs, _, _, err := parseH2load(h2out)
	if err != nil {
		t.Fatal(err)
	}
	if h2figs.Non2xx != 0 {
		t.Errorf("h2load: statuses other than 200: %v\n%s", h2figs, h2out)
	}
	out, err := wrk.wait(t, 30*time.Second)
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	figs, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "BADBODY") || strings.Contains(out, "BADSTATUS") || figs.Non2xx != 0 || figs.Requests == 0 {
		t.Errorf("wrk: damaged bodies, statuses other than 200, or no request served: %v\n%s", figs, out)
	}
	iout, err := iperf.wait(t, 30*time.Second)
	if err != nil {
		t.Fatalf("iperf3 through the tunnel: %v\n%s", err, iout)
	}
	var res struct {
		End struct {
			SumSent     struct{ Bytes float64 } `json:"sum_sent"`
			SumReceived struct{ Bytes float64 } `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(iout), &res); err != nil {
		t.Fatalf("iperf3 JSON: %v\n%s", err, iout)
	}
	// iperf3 counts what its server received until the end of the test,
	// not what was still in the tunnel then: no byte count to compare,
	// only a transfer that went through (wrk's bodies are checked).
	if res.End.SumReceived.Bytes == 0 || res.End.SumReceived.Bytes > res.End.SumSent.Bytes {
		t.Errorf("iperf3: %v bytes sent, %v received", res.End.SumSent.Bytes, res.End.SumReceived.Bytes)
	}

	// Conservation after the load: every connection gone, every
	// reservation and payload buffer back, the UMEM at its idle figure.
	allBack := func(when string) {
		t.Helper()
		var r, p int64
		var frames string
		if !testutil.Eventually(func() bool {
			r, _, p = stats()
			var ok bool
			ok, frames = umemBack()
			return r == 0 && p == 0 && ok
		}) {
			t.Fatalf("%s: %d bytes still reserved, %d payload buffers held; UMEM frames %s(fill rings at idle: %v)", when, r, p, frames, idleFill)
		}
	}
	allBack("after the load")
	_, w, _ := stats()
	refused, _ := metricSum(metricsText(t, env), regexp.MustCompile(`^xdpnet_connections_refused_total$`), `reason="budget"`)
	if w.waits == 0 || w.fails == 0 || refused == 0 {
		t.Errorf("no connection waited (%d), failed its wait (%d) or was refused (%v): the budget was not spent", w.waits, w.fails, refused)
	}
	ps := env.Engine.Stats().Engine.Payload
	if ps.LiveBytes > ps.LimitBytes || ps.LimitBytes != connBudgetRoom {
		t.Errorf("budget %d exceeded or wrong: %+v", connBudgetRoom, ps)
	}

	// Recovery: without the load, new connections are served.
	var args []string
	for range 5 {
		args = append(args, "-o", "/dev/null", url)
	}
	c := startProc(t, env.Lab.Client, nil, "curl", append([]string{"-s", "--max-time", "10", "-w", "%{http_code} %{size_download}\n"}, args...)...)
	cout, err := c.wait(t, 30*time.Second)
	if want := strings.Repeat(fmt.Sprintf("200 %d\n", connBudgetBody), 5); err != nil || cout != want {
		t.Errorf("curl after the load: %v\n%s", err, cout)
	}

	// Drain under the same load: connections waiting for room are
	// refused, the others finish, and everything comes back.
	drainLoad := startProc(t, env.Lab.Client, nil, "h2load", "-c", "12", "-m", "1", "-t", "1", "-D", "10", "-T", "5", url)
	testutil.WaitFor(t, "the budget spent again (a connection refused)", func() bool {
		_, w2, _ := stats()
		return w2.fails > w.fails
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.Engine.Shutdown(ctx); err != nil {
		t.Errorf("drain: %v", err)
	}
	drainLoad.kill()
	allBack("after the drain")
	t.Logf("FIGURES conn-budget wrk: %v; h2load: %v; iperf3 %.0f bytes; tcp waits %d, wait failures %d, refused %v", figs, h2figs, res.End.SumReceived.Bytes, w.waits, w.fails, refused)
}

// TestMemoryBudgetBackendConnections checks the reservations of the
// backend TCP connections: h2load (4 h2c connections, 400 requests)
// through the http frontend to nginx over HTTP/2 with TLS, in a bounded
// budget. While the backend connections live they reserve
// tcp_receive.max + tcp_send.max each; after the drain (which closes
// them) every reservation, client and backend, is back.
func TestMemoryBudgetBackendConnections(t *testing.T) {
	needTool(t, "h2load")
	f := startFaultLab(t, faultOpts{kinds: []originKind{nginxH2}, top: fmt.Sprintf("buffers: {memory: %d, "+
		"tcp_receive: {default: 64KiB, max: 64KiB}, tcp_send: {default: 64KiB, max: 64KiB}}\n", budgetUMEM+16*connBudgetReservation+4*config.PayloadBufferSize)})
	out, err := runIn(t, f.env.StartClient, 60*time.Second, "h2load", "-n", "400", "-c", "4", "-m", "8", "-t", "1", "-T", "10", f.url())
	if err != nil {
		t.Fatalf("h2load: %v\n%s", err, out)
	}
	figs, total, _, err := parseH2load(out)
	if err != nil || figs.Requests != total || figs.failed() != 0 {
		t.Errorf("h2load: %v of %d, %v\n%s", figs, total, err, out)
	}
	tcp := f.env.Engine.Stats().Engine.TCP
	if tcp.BackendReservedBytes == 0 || tcp.BackendReservedBytes%connBudgetReservation != 0 {
		t.Errorf("backend connections reserve %d bytes, want a positive multiple of %d", tcp.BackendReservedBytes, connBudgetReservation)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.env.Engine.Shutdown(ctx); err != nil {
		t.Errorf("drain: %v", err)
	}
	var last stats.TCPBufferStats
	if !testutil.Eventually(func() bool {
		last = f.env.Engine.Stats().Engine.TCP
		return last.BackendReservedBytes == 0 && last.ReservedBytes == 0
	}) {
		t.Errorf("reservations not all back after the drain: %+v", last)
	}
	t.Logf("FIGURES backend-budget h2load: %v; backend reservations under load %d KiB", figs, tcp.BackendReservedBytes>>10)
}
