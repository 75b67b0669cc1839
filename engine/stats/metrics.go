package engine

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the engine's live counters, and the registry that serves
// them on /metrics. The counters feed the stats snapshot (stats.go), which
// a snapshotCollector turns into the Prometheus series; only the request
// duration histogram, which no snapshot carries, is a Prometheus metric
// of its own. The registry is the engine's, so that several engines
// (tests) can live in one process.
type metrics struct {
	reg     *prometheus.Registry
	latency *prometheus.HistogramVec // frontend

	// Label values of each vec, in order, are in its comment; stats.go
	// says which snapshot field each one fills.
	requests        counterVec // frontend, class, result
	clientConns     counterVec // frontend (a gauge)
	refused         counterVec // frontend, reason
	clientTimeouts  counterVec // frontend, reason
	tunnels         counterVec // frontend, result
	backendRequests counterVec // backend, server
	connsOpened     counterVec // backend, server
	connectErrors   counterVec // backend, server
	serverUp        counterVec // backend, server (a gauge: 1 or 0)
	socketsReplaced counterVec // backend
	silentConns     counterVec // backend, server
	failures        counterVec // backend, reason
	retries         counterVec // backend
	redispatches    counterVec // backend
	workerPicks     counterVec // by
	connsOpen       counter    // a gauge
	drainCut        counter
}

func newMetrics(stack string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "xdpnet_request_duration_seconds",
		Help:    "Time from request headers to the end of the response, per frontend.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
	}, []string{"frontend"})
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xdpnet_info", Help: "Always 1; the stack label says which network stack the data plane runs on.",
	}, []string{"stack"})
	info.WithLabelValues(stack).Set(1)
	m.reg.MustRegister(m.latency, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
