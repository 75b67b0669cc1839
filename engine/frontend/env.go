package frontend

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/engine/accesslog"
	"github.com/xdpnet/xdpnet/engine/netapi"
	"github.com/xdpnet/xdpnet/engine/stats"
)

// Env is what the frontends of one engine share: the network stack, the
// workers, the counters, and the engine-wide connection limit and requests
// in flight. The engine owns it; frontends hold a pointer.
type Env struct {
	Net netapi.Net
	// Workers is the number of workers (one per dedicated queue on xdp):
	// each client connection is served by one (see pickWorker).
	Workers  int
	Log      *slog.Logger
	Counters *stats.Counters
	// Latency is xdpnet_request_duration_seconds, by frontend.
	Latency *prometheus.HistogramVec

	// Conns counts client connections over all frontends against the
	// engine's max_connections.
	Conns ConnLimit
	// Inflight counts HTTP requests in progress (a drain waits for them);
	// InflightN is its count, for what a drain's deadline cuts.
	Inflight  sync.WaitGroup
	InflightN atomic.Int64
	// TunnelsN counts open tunnels (tcp frontends) and WebSockets, for
	// what a drain's deadline cuts (they count in xdpnet_tunnels_total).
	TunnelsN atomic.Int64
	// Payload is the engine's pool of payload buffers, bounded by the
	// payload allowance of buffers.memory: each proxied response in
	// flight holds one buffer (the copy of its body; forward takes it,
	// and releases it when the response is done). PayloadWait is how long
	// a request waits for one (buffers.wait).
	Payload     *bufring.BytePool
	PayloadWait time.Duration
	// TCP reserves the netstack buffers of client TCP connections in the
	// same budget (tcpbudget.go).
	TCP TCPBudget
	// QUIC reserves the buffers of QUIC connections, client and backend,
	// in the same budget (quicbudget.go).
	QUIC QUICBudget
	// AccessLog is the engine's access log, nil when off; a reload may
	// swap it.
	AccessLog atomic.Pointer[accesslog.Logger]
}
