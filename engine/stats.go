package engine

import (
	"time"

	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/engine/stats"
)

// Stats takes the snapshots and sums them up.
func (e *Engine) Stats() stats.Stats {
	s := stats.Stats{Stack: e.net.Name(), Workers: e.workers, Uptime: time.Since(e.started), Engine: e.engineStats()}
	if dp, ok := e.net.(dataPlane); ok {
		s.Net = dp.Stats()
	}
	s.Summary = s.Engine.Summarize()
	e.mu.Lock()
	for _, rt := range e.backends {
		for i := range rt.NumServers() {
			s.Servers++
			if rt.Server(i).Up() {
				s.ServersUp++
			}
		}
	}
	e.mu.Unlock()
	return s
}

// dataPlane is implemented by stacks with counters of their own
// (dataplane.Plane).
type dataPlane interface {
	Stats() *dataplane.Stats
}

// engineStats reads the live counters into a snapshot, with the pools of
// the current backends.
func (e *Engine) engineStats() stats.EngineStats {
	s := e.metrics.Snapshot()
	ps := e.fenv.Payload.Stats()
	s.Payload = stats.PayloadStats{
		LimitBytes: ps.Limit, LiveBytes: ps.Live, InUse: ps.InUse,
		Gets: ps.Gets, Puts: ps.Puts, Allocs: ps.Allocs,
		Waits: ps.Waits, WaitFailures: ps.WaitFailures, Waiting: ps.Waiting,
		WaitSeconds: ps.WaitTime.Seconds(),
	}
	s.TCP = stats.TCPBufferStats{ReservedBytes: e.fenv.TCP.Held(), BackendReservedBytes: e.fenv.TCP.Backend(), SmallResumes: e.fenv.TCP.Small()}
	s.QUIC = stats.QUICBufferStats{ReservedBytes: e.fenv.QUIC.Held(), BackendReservedBytes: e.fenv.QUIC.Backend()}
	if e.fenv.TCP.Pool != nil {
		s.TCP.Waits, s.TCP.WaitFailures, s.TCP.Waiting = ps.ReserveWaits, ps.ReserveFailures, ps.ReserveWaiting
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, rt := range e.backends {
		st := rt.PoolStats()
		b := s.Backends[name]
		if b == nil {
			b = &stats.BackendStats{Servers: map[string]*stats.ServerStats{}, Failures: map[string]uint64{}}
			s.Backends[name] = b
		}
		b.Reuse = &st
	}
	return s
}
