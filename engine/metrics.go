package engine

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/xdpnet/xdpnet/reuse"
)

// metrics are the engine's Prometheus series, on its own registry so that
// several engines (tests) can live in one process.
type metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec   // frontend, class, result
	latency         *prometheus.HistogramVec // frontend
	clientConns     *prometheus.GaugeVec     // frontend
	refused         *prometheus.CounterVec   // frontend, reason
	clientTimeouts  *prometheus.CounterVec   // frontend, reason
	tunnels         *prometheus.CounterVec   // frontend, result
	backendRequests *prometheus.CounterVec   // backend, server
	connsOpened     *prometheus.CounterVec   // backend, server
	connectErrors   *prometheus.CounterVec   // backend, server
	connsOpen       prometheus.Gauge
	socketsReplaced *prometheus.CounterVec // backend
	silentConns     *prometheus.CounterVec // backend, server
	failures        *prometheus.CounterVec // backend, reason
	drainCut        prometheus.Counter
	retries         *prometheus.CounterVec // backend
	redispatches    *prometheus.CounterVec // backend
	serverUp        *prometheus.GaugeVec   // backend, server
	workerPicks     *prometheus.CounterVec // by
	info            *prometheus.GaugeVec   // stack
}

func newMetrics(stack string) *metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{reg: reg}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_requests_total", Help: "HTTP requests answered by frontends, by status class and result (ok, failed, aborted, client_gone, bad_request, body_timeout).",
	}, []string{"frontend", "class", "result"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "xdpnet_request_duration_seconds",
		Help:    "Time from request headers to the end of the response, per frontend.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
	}, []string{"frontend"})
	m.clientConns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xdpnet_client_connections", Help: "Open client connections per frontend.",
	}, []string{"frontend"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_connections_refused_total", Help: "Client connections refused by a connection limit, by reason: frontend_limit or engine_limit (max_connections). TCP ones are closed right after accept, QUIC ones get CONNECTION_REFUSED.",
	}, []string{"frontend", "reason"})
	m.clientTimeouts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_client_timeouts_total", Help: "Requests cut because the client was too slow, by reason: body (a request body read waited longer than timeouts.body).",
	}, []string{"frontend", "reason"})
	m.tunnels = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_tunnels_total", Help: "TCP connections tunnelled as raw streams, by result: ok, failed (no stream opened), reset (either side failed), idle (cut by the idle timeout), cut (still open at the drain deadline).",
	}, []string{"frontend", "result"})
	m.backendRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_backend_requests_total", Help: "Requests and tunnels that reached a backend server (response headers or an open stream).",
	}, []string{"backend", "server"})
	m.connsOpened = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_backend_connections_opened_total", Help: "Backend QUIC connections opened (handshakes completed).",
	}, []string{"backend", "server"})
	m.connectErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_backend_connect_errors_total", Help: "Failed backend connection attempts.",
	}, []string{"backend", "server"})
	m.connsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "xdpnet_backend_connections_open", Help: "Backend QUIC connections open now.",
	})
	m.socketsReplaced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_backend_sockets_replaced_total", Help: "Backend UDP sockets found failed for good and replaced by a new one.",
	}, []string{"backend"})
	m.silentConns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_backend_silent_connections_total", Help: "Backend connections closed because a request waited timeouts.probe for its response and the connection then answered no PING either.",
	}, []string{"backend", "server"})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_backend_failures_total", Help: "Requests and tunnels the gateway answered with an error of its own (502, 503, 504 or a refused tunnel), by reason.",
	}, []string{"backend", "reason"})
	m.drainCut = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "xdpnet_drain_cut_requests_total", Help: "HTTP requests still in flight when a drain's deadline passed, cut (tunnels cut count in xdpnet_tunnels_total{result=\"cut\"}).",
	})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_retries_total", Help: "Backend attempts after the first, per backend.",
	}, []string{"backend"})
	m.redispatches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_redispatches_total", Help: "Retries sent to a server chosen again by the balancer.",
	}, []string{"backend"})
	m.serverUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xdpnet_server_up", Help: "1 if the server takes traffic, 0 if health checks took it out.",
	}, []string{"backend", "server"})
	m.workerPicks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xdpnet_worker_picks_total", Help: "Client connections given to a worker, by how it was chosen: rx_queue (the queue the connection arrived on) or hash (of the client address).",
	}, []string{"by"})
	m.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xdpnet_info", Help: "Always 1; the stack label says which network stack the data plane runs on.",
	}, []string{"stack"})
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.clientConns, m.refused, m.clientTimeouts, m.tunnels,
		m.backendRequests, m.connsOpened, m.connectErrors, m.connsOpen, m.socketsReplaced, m.silentConns, m.failures, m.drainCut, m.retries,
		m.redispatches, m.serverUp, m.workerPicks, m.info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	m.info.WithLabelValues(stack).Set(1)
	return m
}

// reuseCollector exports the backend pools' reuse statistics, read at
// scrape time from whichever backends are current.
type reuseCollector struct {
	stats func() map[string]reuse.Stats // by backend name
}

var (
	reuseAttachesDesc = prometheus.NewDesc("xdpnet_reuse_attaches_total",
		"Requests and tunnels given a backend stream by the reuse pool.", []string{"backend"}, nil)
	reuseMissesDesc = prometheus.NewDesc("xdpnet_reuse_misses_total",
		"Attaches that had to dial a new connection.", []string{"backend"}, nil)
	reuseTakeoversDesc = prometheus.NewDesc("xdpnet_reuse_takeovers_total",
		"Attaches served by an idle connection taken from another worker.", []string{"backend"}, nil)
	reuseRetriesDesc = prometheus.NewDesc("xdpnet_reuse_retries_total",
		"Requests sent again on a fresh connection after their reused connection died under them (reuse.Worker.Retry).", []string{"backend"}, nil)
	reuseQueuedDesc = prometheus.NewDesc("xdpnet_reuse_queued_total",
		"Waits of a request for stream credit or a dial slot (reuse.max_dials, reuse.max_conns).", []string{"backend"}, nil)
	reuseQueueTimeoutsDesc = prometheus.NewDesc("xdpnet_reuse_queue_timeouts_total",
		"Requests that waited timeouts.queue for a stream and got 503.", []string{"backend"}, nil)
	reuseConnsDesc = prometheus.NewDesc("xdpnet_reuse_connections",
		"Pooled backend connections by tree.", []string{"backend", "tree"}, nil)
)

func (c reuseCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{reuseAttachesDesc, reuseMissesDesc, reuseTakeoversDesc, reuseRetriesDesc,
		reuseQueuedDesc, reuseQueueTimeoutsDesc, reuseConnsDesc} {
		ch <- d
	}
}

func (c reuseCollector) Collect(ch chan<- prometheus.Metric) {
	for name, st := range c.stats() {
		ch <- prometheus.MustNewConstMetric(reuseAttachesDesc, prometheus.CounterValue, float64(st.Attaches), name)
		ch <- prometheus.MustNewConstMetric(reuseMissesDesc, prometheus.CounterValue, float64(st.Misses), name)
		ch <- prometheus.MustNewConstMetric(reuseTakeoversDesc, prometheus.CounterValue, float64(st.Takeovers), name)
		ch <- prometheus.MustNewConstMetric(reuseRetriesDesc, prometheus.CounterValue, float64(st.Retries), name)
		ch <- prometheus.MustNewConstMetric(reuseQueuedDesc, prometheus.CounterValue, float64(st.Queued), name)
		ch <- prometheus.MustNewConstMetric(reuseQueueTimeoutsDesc, prometheus.CounterValue, float64(st.QueueTimeouts), name)
		for tree, n := range map[string]int{"idle": st.Idle, "safe": st.Safe, "avail": st.Avail, "private": st.Private} {
			ch <- prometheus.MustNewConstMetric(reuseConnsDesc, prometheus.GaugeValue, float64(n), name, tree)
		}
	}
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
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			case m.Untyped != nil:
				total += m.Untyped.GetValue()
			}
		}
	}
	return total
}
