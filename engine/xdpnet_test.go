package engine_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
)

// TestXDPNetTXKicks checks the AF_XDP counters of the stats snapshot after
// proxied traffic: every interface sent packets, and no more TX kicks than
// packets (the queueing discipline in front of the endpoint batches sends;
// one kick per packet is the worst case); the backend QUIC datagrams took
// the netstack's UDP fast path both ways.
func TestXDPNetTXKicks(t *testing.T) {
	env := startLab(t, "xdp", enginelab.Options{})
	c := env.HTTPClient(8, false)
	defer c.CloseIdleConnections()
	if failed, err := get(t, c, env.FrontendURL("http")+"/bytes/1024", 200, 8); failed > 0 {
		t.Fatalf("%d of 200 requests failed: %v", failed, err)
	}
	tx := map[string]uint64{}
	kicks := map[string]uint64{}
	var fastRX, fastTX uint64 // over all interfaces
	for name, is := range env.Engine.Stats().Net.Interfaces {
		for _, q := range is.Queues {
			tx[name] += q.Port.TxPackets
			kicks[name] += q.Port.TxKicks
			fastRX += q.Endpoint.RXUDPFast
			fastTX += q.Endpoint.TXUDPFast
		}
	}
	if len(tx) != len(env.Config.Interfaces) {
		t.Fatalf("TX packet counters for %d interfaces, want %d: %v", len(tx), len(env.Config.Interfaces), tx)
	}
	for name, n := range tx {
		k := kicks[name]
		if n == 0 || k == 0 || k > n {
			t.Errorf("interface %s: %v TX kicks for %v TX packets; want 0 < kicks <= packets", name, k, n)
		}
		t.Logf("interface %s: %d TX packets, %d kicks (%.2f per packet)", name, n, k, float64(k)/float64(n))
	}
	// 200 requests, each at least one datagram each way.
	if fastTX < 200 || fastRX < 200 {
		t.Errorf("UDP fast path carried %v datagrams out and %v in for 200 backend requests", fastTX, fastRX)
	}
}

// TestXDPNetCloseUnderTraffic closes the engine and its AF_XDP netstack
// while clients keep sending: frames still arrive while the stack tears its
// NICs down, which once deadlocked (a receive goroutine delivering a packet
// waited for netstack's stack lock, held by the NIC removal waiting for that
// goroutine).
func TestXDPNetCloseUnderTraffic(t *testing.T) {
	env := startLab(t, "xdp", enginelab.Options{})
	c := env.HTTPClient(8, false)
	c.Timeout = 5 * time.Second
	defer c.CloseIdleConnections()
	url := env.FrontendURL("http") + "/bytes/1024"
	ctx, cancel := context.WithCancel(context.Background())
	var ok atomic.Int64
	busy := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := 0; i < 20000 && ctx.Err() == nil; i++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := c.Do(req)
				if err != nil {
					continue
				}
				if _, err := io.Copy(io.Discard, resp.Body); err == nil && resp.StatusCode == http.StatusOK && ok.Add(1) == 200 {
					close(busy) // traffic is flowing: close now
				}
				resp.Body.Close()
			}
		})
	}
	defer wg.Wait()
	defer cancel()
	select {
	case <-busy:
	case <-time.After(time.Minute):
		t.Fatalf("only %d requests succeeded in a minute", ok.Load())
	}
	// The engine and its network stack close under traffic; the lab (the
	// clients' namespace) stays until the clients stop, in the cleanup.
	closed := make(chan error, 1)
	go func() { closed <- errors.Join(env.Engine.Close(), env.Net.Close()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close under traffic: %v", err)
		}
	case <-time.After(2 * time.Minute):
		panic("engine close under traffic did not return in 2 minutes (deadlock?)")
	}
}
