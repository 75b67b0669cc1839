package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/engine/config"

	"github.com/xdpnet/xdpnet/engine/enginelab"
)

// ReuseConfig shapes the reuse-ratio-over-time experiment: clients that
// open a connection to the engine's HTTP frontend, send a few requests on
// it and close it, over and over, while the engine's backend reuse
// statistics are sampled.
type ReuseConfig struct {
	Duration time.Duration // bound of the load
	Interval time.Duration // sampling interval
	Clients  int           // concurrent client connections
	// PerConn is the number of requests per client connection: reuse
	// across client connections is what the policies differ in.
	PerConn int
	// MaxRequests bounds the load in count.
	MaxRequests int
	// Dataplane is the engine's data plane, "xdp" (default) or "kernel".
	Dataplane string
}

func (c ReuseConfig) withDefaults(short bool) ReuseConfig {
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
		if short {
			c.Duration = 2 * time.Second
		}
	}
	if c.Interval <= 0 {
		c.Interval = 500 * time.Millisecond
		if short {
			c.Interval = 250 * time.Millisecond
		}
	}
	if c.Clients <= 0 {
		c.Clients = 4
	}
	if c.PerConn <= 0 {
		c.PerConn = 2
	}
	if c.MaxRequests <= 0 {
		c.MaxRequests = 200000
	}
	if c.Dataplane == "" {
		c.Dataplane = "xdp"
	}
	return c
}

// reusePolicies are the series the suite draws: the engine's default
// policy and the baseline that never shares a backend connection between
// client connections.
var reusePolicies = []struct {
	policy   string
	baseline bool
}{{config.ReuseSafe, false}, {config.ReuseNever, true}}

// stallAfter ends a series in which no request completed: the data plane
// does not carry the load, and waiting out Duration would only hide it.
const stallAfter = 3 * time.Second

// ReuseSeries runs the engine on the lab (cfg.Dataplane) with the given
// backend reuse policy and returns the share of backend requests served
// on an existing connection (1 - misses/attaches of the reuse pool) per
// interval.
func ReuseSeries(ctx context.Context, policy string, cfg ReuseConfig) (Series, error) {
	s := Series{Name: "reuse policy " + policy, Unit: "backend reuse ratio",
		Conditions: map[string]string{
			"clients": fmt.Sprint(cfg.Clients), "requests_per_conn": fmt.Sprint(cfg.PerConn),
			"interval": cfg.Interval.String(), "dataplane": cfg.Dataplane,
		}}
	text := strings.Replace(config.Demo, "reuse: {policy: safe,", "reuse: {policy: "+policy+",", 1)
	if text == config.Demo && policy != config.ReuseSafe {
		return s, errors.New("demo configuration has no reuse policy to replace")
	}
	env, err := enginelab.Start(enginelab.Options{Config: text, Admin: "127.0.0.1:0", Stack: cfg.Dataplane})
	if err != nil {
		return s, fmt.Errorf("engine lab: %w", err)
	}
	defer env.Close()
	url := env.FrontendURL("http") + "/bytes/100"
	// Wait for the origins to pass their health checks (bounded).
	for i := 0; env.Engine.Stats().ServersUp == 0 && i < 100; i++ {
		time.Sleep(50 * time.Millisecond)
	}

	lctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		requests, failures atomic.Int64
		completed          atomic.Int64
		wg                 sync.WaitGroup
	)
	for range cfg.Clients {
		wg.Go(func() {
			for lctx.Err() == nil && requests.Load() < int64(cfg.MaxRequests) {
				c := env.HTTPClient(1, false)
				for range cfg.PerConn {
					req, _ := http.NewRequestWithContext(lctx, http.MethodGet, url, nil)
					resp, err := c.Do(req)
					requests.Add(1)
					if err != nil {
						if lctx.Err() == nil {
							failures.Add(1)
						}
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					completed.Add(1)
				}
				c.CloseIdleConnections()
			}
		})
	}

	cpu0, cpuErr := ReadCPU()
	start := time.Now()
	prev := env.Engine.Stats().Reuse
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-lctx.Done():
			done = true
		case <-tick.C:
		}
		if completed.Load() == 0 && time.Since(start) > stallAfter {
			cancel()
			wg.Wait()
			return s, fmt.Errorf("%s data plane: no request completed in %v", cfg.Dataplane, stallAfter)
		}
		cur := env.Engine.Stats().Reuse
		attaches, misses := cur.Attaches-prev.Attaches, cur.Misses-prev.Misses
		if attaches > 0 {
			s.Points = append(s.Points, [2]float64{time.Since(start).Seconds(), 1 - float64(misses)/float64(attaches)})
		}
		prev = cur
	}
	wg.Wait()
	if cpu1, err := ReadCPU(); cpuErr == nil && err == nil {
		s.CPU = cpu1.Sub(cpu0).Busy.Seconds()
	}
	s.Requests, s.Failures = requests.Load(), failures.Load()
	if s.Requests == 0 || len(s.Points) == 0 {
		return s, fmt.Errorf("no request went through (%d failed)", s.Failures)
	}
	return s, nil
}
