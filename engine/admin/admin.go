package admin

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xdpnet/xdpnet/engine/stats"
)

// Registry is the Prometheus registry that serves /metrics: the series of
// the snapshot (a collector that reads nothing else), the request duration
// histogram, which no snapshot carries, xdpnet_info and the Go and process
// collectors. It is the engine's, so that several engines (tests) can live
// in one process.
type Registry struct {
	*prometheus.Registry
	// Latency is xdpnet_request_duration_seconds, by frontend.
	Latency *prometheus.HistogramVec
}

// NewRegistry makes the registry of an engine on the stack named stack
// whose snapshots snapshot takes.
func NewRegistry(stack string, snapshot func() stats.Stats) *Registry {
	r := &Registry{Registry: prometheus.NewRegistry()}
	r.Latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "xdpnet_request_duration_seconds",
		Help:    "Time from request headers to the end of the response, per frontend.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
	}, []string{"frontend"})
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xdpnet_info", Help: "Always 1; the stack label says which network stack the data plane runs on.",
	}, []string{"stack"})
	info.WithLabelValues(stack).Set(1)
	r.MustRegister(r.Latency, info, snapshotCollector{snapshot: snapshot},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves /metrics (Prometheus, from reg), /stats (JSON, the
// snapshot that snapshot takes) and /healthz, and with profiles the Go
// runtime's profiles under /debug/pprof/ (config admin_pprof). They are
// read-only: the "GET " patterns make the mux answer any other method than
// GET and HEAD with 405 and "Allow: GET, HEAD", so that nothing mistakes
// them for an API that acts.
func Handler(reg *Registry, snapshot func() stats.Stats, profiles bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /stats", statsHandler(snapshot))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	if profiles {
		// Registered on this mux, not net/http's default one, so that
		// only an engine that asked for them serves them.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// statsHandler serves the /stats document that snapshot takes.
func statsHandler(snapshot func() stats.Stats) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(snapshot())
	})
}

// Serve listens on addr, a kernel socket, and serves h there until the
// returned server is closed. An address that is not loopback (which
// configuration allows only with admin_public: true) is logged as a
// warning.
func Serve(addr string, h http.Handler, log *slog.Logger) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("admin: %w", err)
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().Unmap().IsLoopback() {
		log.Warn("admin endpoint on a non-loopback address (admin_public: true): anyone who reaches it reads /metrics and /stats, without authentication",
			"addr", ln.Addr())
	}
	// No WriteTimeout: a CPU profile or trace streams for the seconds
	// it was asked for.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) // ends when the caller closes srv
	return srv, ln.Addr(), nil
}
