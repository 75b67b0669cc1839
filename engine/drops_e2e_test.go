package engine_test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// sample is one counter of a /metrics scrape.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrapeMetrics reads the engine's /metrics and returns the samples of the
// families named (text format: name{k="v",...} value).
func scrapeMetrics(t *testing.T, env *enginelab.Env, families ...string) []sample {
	t.Helper()
	resp, err := http.Get("http://" + env.Engine.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []sample
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok || strings.HasPrefix(line, "#") || !slices.Contains(families, name) {
			continue
		}
		lbls, val, ok := strings.Cut(rest, "} ")
		if !ok {
			t.Fatalf("metrics line %q", line)
		}
		s := sample{name: name, labels: map[string]string{}}
		for _, kv := range strings.Split(lbls, ",") {
			k, v, _ := strings.Cut(kv, "=")
			s.labels[k] = strings.Trim(v, `"`)
		}
		if s.value, err = strconv.ParseFloat(val, 64); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// dropKey is where a batch must show in /metrics, summed over interfaces
// and queues: family and the labels that name the reason.
func dropKey(b stacktest.Batch) string {
	switch {
	case b.XDPMalformed:
		return "xdpnet_xdp_frames_total/malformed"
	case b.Endpoint:
		return "xdpnet_endpoint_drops_total/" + b.Dir + "/" + b.Reason
	default:
		return "xdpnet_netstack_drops_total/" + b.Dir + "/" + b.Reason
	}
}

// dropTotals sums a scrape by dropKey; per-queue endpoint drops and XDP
// verdicts are also kept by queue ("...@q").
func dropTotals(ss []sample) map[string]float64 {
	m := map[string]float64{}
	for _, s := range ss {
		switch s.name {
		case "xdpnet_xdp_frames_total":
			k := s.name + "/" + s.labels["verdict"]
			m[k] += s.value
			m[k+"@"+s.labels["queue"]] += s.value
		case "xdpnet_endpoint_drops_total":
			k := s.name + "/" + s.labels["dir"] + "/" + s.labels["reason"]
			m[k] += s.value
			m[k+"@"+s.labels["queue"]] += s.value
		default:
			m[s.name+"/"+s.labels["dir"]+"/"+s.labels["reason"]] += s.value
		}
	}
	return m
}

var dropFamilies = []string{"xdpnet_xdp_frames_total", "xdpnet_endpoint_drops_total", "xdpnet_netstack_drops_total", "xdpnet_xsk_drops_total"}

// TestXDPNetMalformedDropsCounted sends stacktest's batches of malformed
// and hostile frames from the client namespace to the engine's address
// over an AF_PACKET socket, on a two-queue veth, and checks in /metrics that
// each batch moved its reason by the batch size: the steering program's
// malformed count for headers it cannot parse, the endpoint's per-queue
// checksum drops, netstack's reasons for the rest, and, after netstack's
// 30 s reassembly timer, the datagrams whose fragments never completed.
// The engine must still proxy requests afterwards (a panic anywhere ends
// the test binary).
func TestXDPNetMalformedDropsCounted(t *testing.T) {
	env := startLab(t, "xdp", enginelab.Options{Queues: 2})
	lk := env.Lab.ClientLink
	var open netip.AddrPort
	for _, f := range env.Config.Frontends {
		if f.Name == "http" {
			open = netip.MustParseAddrPort(f.Listen)
		}
	}
	if open.Addr() != lk.EngineV4 {
		t.Fatalf("http frontend %v is not on the engine's client address %v", open, lk.EngineV4)
	}
	const n = 32
	batches, err := stacktest.MalformedBatches(stacktest.Targets{
		SrcMAC: lk.PeerMAC, DstMAC: lk.MAC, Src: lk.PeerV4()[0], Dst: lk.EngineV4,
		OpenTCP: open.Port(), ClosedTCP: 81, ClosedUDP: 9,
	}, n)
	if err != nil {
		t.Fatal(err)
	}

	var fd int
	if err := env.Lab.Client.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Ifindex: lk.PeerIndex, Halen: 6}
	send := func(b stacktest.Batch) {
		t.Helper()
		for _, f := range b.Frames {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				t.Fatalf("%s: send: %v", b.Name, err)
			}
		}
	}
	// waitMoved polls /metrics until key moved by want from before, or
	// the deadline passes, and returns the last totals.
	waitMoved := func(key string, before map[string]float64, want uint64, d time.Duration) map[string]float64 {
		deadline := time.Now().Add(d)
		for {
			now := dropTotals(scrapeMetrics(t, env, dropFamilies...))
			if now[key]-before[key] >= float64(want) || time.Now().After(deadline) {
				return now
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The slow batch first, so that its 30 s run while the others go.
	var slow *stacktest.Batch
	var slowBefore map[string]float64
	var slowSent time.Time
	for i := range batches {
		if batches[i].Slow {
			slow = &batches[i]
			slowBefore = dropTotals(scrapeMetrics(t, env, dropFamilies...))
			if _, ok := slowBefore[dropKey(*slow)]; !ok {
				t.Fatalf("%s: %s not in /metrics", slow.Name, dropKey(*slow))
			}
			send(*slow)
			slowSent = time.Now()
		}
	}
	for _, b := range batches {
		if b.Slow {
			continue
		}
		key := dropKey(b)
		before := dropTotals(scrapeMetrics(t, env, dropFamilies...))
		if _, ok := before[key]; !ok {
			t.Errorf("%s: %s not in /metrics", b.Name, key)
			continue
		}
		send(b)
		after := waitMoved(key, before, b.Want, 10*time.Second)
		got := after[key] - before[key]
		if got != float64(b.Want) {
			t.Errorf("%s (%d frames): %s moved by %v, want %d", b.Name, len(b.Frames), key, got, b.Want)
		}
		var also []string
		for k, v := range after {
			if k != key && !strings.Contains(k, "@") && v != before[k] && !strings.HasSuffix(k, "/redirected") && !strings.HasSuffix(k, "/passed") {
				also = append(also, fmt.Sprintf("%s +%v", k, v-before[k]))
			}
		}
		perQueue := ""
		if b.Endpoint || b.XDPMalformed {
			perQueue = fmt.Sprintf(" (queue 0 +%v, queue 1 +%v)", after[key+"@0"]-before[key+"@0"], after[key+"@1"]-before[key+"@1"])
		}
		t.Logf("%-45s %3d frames: %s +%v%s; also %v", b.Name, len(b.Frames), key, got, perQueue, also)
	}

	if slow != nil {
		key := dropKey(*slow)
		after := waitMoved(key, slowBefore, slow.Want, 45*time.Second-time.Since(slowSent))
		if got := after[key] - slowBefore[key]; got != float64(slow.Want) {
			t.Errorf("%s (%d fragments): %s moved by %v within %v, want %d", slow.Name, len(slow.Frames), key, got, time.Since(slowSent).Round(time.Second), slow.Want)
		} else {
			t.Logf("%-45s %3d frames: %s +%v after %v", slow.Name, len(slow.Frames), key, got, time.Since(slowSent).Round(time.Second))
		}
	}

	c := env.HTTPClient(2, false)
	defer c.CloseIdleConnections()
	if failed, err := get(t, c, env.FrontendURL("http")+"/bytes/1024", 20, 2); failed > 0 {
		t.Errorf("after the malformed frames, %d of 20 requests failed: %v", failed, err)
	}
}
