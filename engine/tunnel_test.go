package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/xdpnet/xdpnet/internal/testutil"
)

// stallTarget is a TCP server behind the origins' raw streams that accepts
// and then either never reads (serverReads false) or floods the client
// without reading: a far end stalled in one direction.
func stallTarget(t *testing.T, flood bool) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			if flood {
				go func() {
					buf := make([]byte, 64<<10)
					for {
						if _, err := c.Write(buf); err != nil {
							return
						}
					}
				}()
			}
		}
	}()
	return ln
}

// TestTunnelStalledPeerCutByIdle: a tunnel whose server stops reading
// (client keeps writing) or whose client stops reading (server keeps
// writing) moves nothing once the windows fill; the idle timeout must cut
// it, count it, and leave no goroutine of the tunnel behind, and a drain
// must then finish at once.
func TestTunnelStalledPeerCutByIdle(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flood bool // the server writes, the client never reads
	}{{"server stops reading", false}, {"client stops reading", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cert, roots := labCert(t)
			target := stallTarget(t, tc.flood)
			os := loopOrigins(t, cert, 1, target.Addr().String())
			cfg := baseConfig("tcp", os, "")
			cfg = replaceOnce(t, cfg, "idle: 5s", "idle: 400ms")
			e := loopEngine(t, roots, cfg)
			c, err := net.DialTimeout("tcp", e.FrontendAddr("fe").String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !tc.flood {
				go func() {
					buf := make([]byte, 64<<10)
					for {
						if _, err := c.Write(buf); err != nil {
							return
						}
					}
				}()
			}
			// The client never reads: with flood, the server's bytes fill
			// the windows and stop.
			testutil.WaitFor(t, "the tunnel counted as idle", func() bool {
				return counterValue(t, e, "xdpnet_tunnels_total", map[string]string{"result": "idle"}) == 1
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := e.Shutdown(ctx); err != nil {
				t.Fatalf("drain after the cut: %v", err)
			}
		})
	}
}

// TestTunnelDrainDeadlineCutsStalled: SIGTERM's drain with a stalled tunnel
// in flight returns at its deadline, the tunnel reset and counted as cut.
func TestTunnelDrainDeadlineCutsStalled(t *testing.T) {
	cert, roots := labCert(t)
	target := stallTarget(t, false)
	os := loopOrigins(t, cert, 1, target.Addr().String())
	e := loopEngine(t, roots, baseConfig("tcp", os, ""))
	c, err := net.DialTimeout("tcp", e.FrontendAddr("fe").String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	testutil.WaitFor(t, "the tunnel to be open", func() bool {
		return counterValue(t, e, "xdpnet_backend_requests_total", nil) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want the drain deadline's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown blocked past the drain deadline by a stalled tunnel")
	}
	if n := counterValue(t, e, "xdpnet_tunnels_total", map[string]string{"result": "cut"}); n != 1 {
		t.Fatalf("tunnels cut = %v, want 1", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !isConnReset(err) {
		t.Fatalf("client side after the cut: %v", err)
	}
}

func isConnReset(err error) bool {
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// counterValue sums the engine's samples of a metric family whose labels
// match want.
func counterValue(t testing.TB, e *Engine, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return sum(fams, name, want)
}

// sum adds up every sample of the named counter or gauge family, optionally
// only those whose labels match all of want.
func sum(fams []*dto.MetricFamily, name string, want map[string]string) float64 {
	var total float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for k, v := range want {
				if labels(m)[k] != v {
					continue next
				}
			}
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return total
}

// replaceOnce edits a test configuration, failing if old is not in it.
func replaceOnce(t testing.TB, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("config has no %q:\n%s", old, s)
	}
	return strings.Replace(s, old, new, 1)
}

// labels returns m's labels as a map.
func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}
