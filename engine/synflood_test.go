package engine_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
)

// TestFaultSYNFlood: hping3 sends a bounded SYN flood (distinct source
// ports, the client's kernel told to drop the SYN-ACKs so that no RST
// clears the half-open connections) at the http frontend while curl keeps
// fetching through it from the same namespace: every curl succeeds, and
// afterwards the engine holds no client connection and no TCP buffer
// reservation.
func TestFaultSYNFlood(t *testing.T) {
	t.Parallel()
	const (
		floodBase  = 1024 // hping3's first source port, below the ephemeral range
		floodCount = 20000
	)
	needTool(t, "hping3")
	f := startFaultLab(t, faultOpts{kinds: []originKind{nginxHTTP1}, edit: defaultChecks})
	if _, ok := waitServing(f.env, f.url(), time.Now(), recoverWithin); !ok {
		t.Fatal("the engine did not serve")
	}
	nft := newNFTTable(t, f.env.Lab.Client)
	nft.add(t, "tcp sport 8080 tcp dport "+strconv.Itoa(floodBase)+"-"+strconv.Itoa(floodBase+floodCount)+" drop")
	flood := startProc(t, f.env.Lab.Client, nil, "hping3", "-q", "-S", "-p", "8080", "-s", strconv.Itoa(floodBase),
		"-c", strconv.Itoa(floodCount), "-i", "u50", "198.18.1.1")
	var legit, failed int
	for !flood.exited() || legit < 3 {
		out, err := runIn(t, f.env.StartClient, 30*time.Second, "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", f.url())
		legit++
		if err != nil || out != "200" {
			failed++
			t.Logf("curl during the flood: %q, %v", out, err)
		}
	}
	out, _ := flood.wait(t, 30*time.Second)
	drops := f.env.Engine.Stats().Net.NetstackDrops
	t.Logf("FIGURES syn-flood hping3 -c %d: curl %d of %d failed; netstack drops rx %v; hping3: %s", floodCount, failed, legit, drops["rx"], out)
	if failed > 0 {
		t.Errorf("%d of %d requests failed during a SYN flood", failed, legit)
	}
	testutil.WaitFor(t, "client connections and reservations back to none", func() bool {
		st := f.env.Engine.Stats().Engine
		return st.Frontends["http"].ClientConnections == 0 && st.TCP.ReservedBytes == 0
	})
	if out, err := runIn(t, f.env.StartClient, 30*time.Second, "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", f.url()); err != nil || out != "200" {
		t.Errorf("curl after the flood: %q, %v", out, err)
	}
}
