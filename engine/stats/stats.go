package stats

import (
	"time"

	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/reuse"
)

// Stats is the admin /stats document. Engine and Net are the snapshots of
// the engine's and the data plane's counters; /metrics is made from the
// same snapshots (package admin), so every figure in one is in the other,
// which admin.TestStatsReachBothEndpoints checks field by field. The struct tags
// say where each field goes: json its /stats key, metric its Prometheus
// series (metric:"-": not on /metrics), by the labels that the keys of a
// map give, outermost first.
type Stats struct {
	Stack   string        `json:"stack" metric:"-"` // xdpnet_info{stack}
	Workers int           `json:"workers" metric:"-"`
	Uptime  time.Duration `json:"uptime_ns" metric:"-"`
	// Summary sums the snapshots for `xdpnet stats`, the demo and tests;
	// its figures are all in the snapshots already.
	Summary `metric:"-"`
	Engine  EngineStats `json:"engine"`
	// Net is the data plane's snapshot; nil on the kernel stack.
	Net *dataplane.Stats `json:"net,omitempty"`
}

// Summary is the short form of the snapshots, under the /stats keys it has
// always had.
type Summary struct {
	Requests       float64 `json:"requests"`
	RequestsOK     float64 `json:"requests_ok"`
	RequestsFailed float64 `json:"requests_failed"`
	// RequestsAborted counts responses that broke off after their headers
	// went out (the backend died mid-response): no proxy can retry those.
	RequestsAborted float64 `json:"requests_aborted"`
	Tunnels         float64 `json:"tunnels"`
	Retries         float64 `json:"retries"`
	Redispatches    float64 `json:"redispatches"`
	// PicksByQueue and PicksByHash count client connections given to the
	// worker of their RX queue, and to one chosen by address hash.
	PicksByQueue       float64 `json:"worker_picks_rx_queue"`
	PicksByHash        float64 `json:"worker_picks_hash"`
	BackendRequests    float64 `json:"backend_requests"`
	BackendConnsOpened float64 `json:"backend_connections_opened"`
	BackendConnsOpen   float64 `json:"backend_connections_open"`
	ConnectErrors      float64 `json:"connect_errors"`
	// ConnsRefused counts client connections refused by max_connections;
	// ClientTimeouts requests cut because the client was too slow (a
	// stalled request body).
	ConnsRefused   float64 `json:"connections_refused"`
	ClientTimeouts float64 `json:"client_timeouts"`
	// ServersUp and Servers count the servers of the current backends.
	ServersUp int `json:"servers_up"`
	Servers   int `json:"servers"`
	// Reuse sums the backend pools' statistics (current backends only).
	Reuse reuse.Stats `json:"reuse"`
}

// EngineStats is the snapshot of the engine's own counters. Frontends and
// backends a reload removed stay in it with their last figures, as
// Prometheus counters must not go back.
type EngineStats struct {
	Frontends map[string]*FrontendStats `json:"frontends" by:"frontend"`
	Backends  map[string]*BackendStats  `json:"backends" by:"backend"`
	// WorkerPicks counts client connections given to a worker, by how it
	// was chosen: rx_queue (the queue the connection arrived on) or hash
	// (of the client address).
	WorkerPicks      map[string]uint64 `json:"worker_picks" metric:"xdpnet_worker_picks_total" by:"by"`
	BackendConnsOpen int64             `json:"backend_connections_open" metric:"xdpnet_backend_connections_open"`
	DrainCutRequests uint64            `json:"drain_cut_requests" metric:"xdpnet_drain_cut_requests_total"`
	// AccessLogDropped are access log lines dropped because the writer's
	// queue was full.
	AccessLogDropped uint64 `json:"access_log_dropped" metric:"xdpnet_access_log_dropped_total"`
	// Payload is the payload buffer pool, bounded by buffers.memory.
	Payload PayloadStats `json:"payload_buffers"`
	// TCP is the client TCP connections' buffer reservations in the same
	// budget.
	TCP TCPBufferStats `json:"tcp_buffers"`
	// QUIC is the QUIC connections' reservations in the same budget.
	QUIC QUICBufferStats `json:"quic_buffers"`
}

// QUICBufferStats are the reservations of QUIC connections' buffers in
// buffers.memory (quic_receive.max + quic_send each, on either data
// plane). Their waits are counted with the TCP ones (TCPBufferStats: one
// FIFO); client connections refused for want of room in
// xdpnet_connections_refused_total{reason="budget"}, requests whose
// backend dial got none with result no_buffer.
type QUICBufferStats struct {
	// ReservedBytes is what the h3 frontends' client connections reserve
	// now, BackendReservedBytes what the backend connections do.
	ReservedBytes        int64 `json:"reserved_bytes" metric:"xdpnet_quic_buffer_reserved_bytes"`
	BackendReservedBytes int64 `json:"backend_reserved_bytes" metric:"xdpnet_quic_buffer_backend_reserved_bytes"`
}

// TCPBufferStats are the reservations of TCP connections' netstack buffers
// in buffers.memory (xdp data plane; zero on the kernel stack).
type TCPBufferStats struct {
	// ReservedBytes is what the client connections reserve now: each
	// tcp_receive.max + tcp_send.max, a parked one its parked buffers.
	ReservedBytes int64 `json:"reserved_bytes" metric:"xdpnet_tcp_buffer_reserved_bytes"`
	// BackendReservedBytes is what the HTTP/2 and HTTP/1.1 backend
	// connections reserve now, as much each.
	BackendReservedBytes int64 `json:"backend_reserved_bytes" metric:"xdpnet_tcp_buffer_backend_reserved_bytes"`
	// Waits are new connections (client or backend, TCP or QUIC: one
	// FIFO) that waited for their reservation,
	// WaitFailures those whose wait ended without one (refused, reason
	// budget, or shutdown), Waiting those waiting now.
	Waits        uint64 `json:"waits" metric:"xdpnet_tcp_buffer_waits_total"`
	WaitFailures uint64 `json:"wait_failures" metric:"xdpnet_tcp_buffer_wait_failures_total"`
	Waiting      int64  `json:"waiting" metric:"xdpnet_tcp_buffer_waiting"`
	// SmallResumes are parked connections resumed with their parked
	// buffers for want of room in the budget.
	SmallResumes uint64 `json:"small_resumes" metric:"xdpnet_tcp_buffer_small_resumes_total"`
}

// PayloadStats is the snapshot of the engine's payload buffer pool
// (bufring.BytePool.Stats): the budget, what is taken and who waited.
type PayloadStats struct {
	// LimitBytes is the payload allowance of buffers.memory; LiveBytes
	// the memory of the buffers allocated now (held or pooled, never
	// above LimitBytes); InUse the buffers held by requests.
	LimitBytes int64  `json:"limit_bytes" metric:"xdpnet_payload_buffer_limit_bytes"`
	LiveBytes  int64  `json:"live_bytes" metric:"xdpnet_payload_buffer_live_bytes"`
	InUse      int64  `json:"in_use" metric:"xdpnet_payload_buffers_in_use"`
	Gets       uint64 `json:"gets" metric:"xdpnet_payload_buffer_gets_total"`
	Puts       uint64 `json:"puts" metric:"xdpnet_payload_buffer_puts_total"`
	Allocs     uint64 `json:"allocs" metric:"xdpnet_payload_buffer_allocs_total"`
	// Waits are requests that waited for a buffer (the budget spent),
	// WaitFailures those whose wait ended without one (buffers.wait
	// passed, the client left, shutdown), Waiting those waiting now.
	Waits        uint64 `json:"waits" metric:"xdpnet_payload_buffer_waits_total"`
	WaitFailures uint64 `json:"wait_failures" metric:"xdpnet_payload_buffer_wait_failures_total"`
	Waiting      int64  `json:"waiting" metric:"xdpnet_payload_buffer_waiting"`
	// WaitSeconds is the total time of the waits that got a buffer.
	WaitSeconds float64 `json:"wait_seconds" metric:"xdpnet_payload_buffer_wait_seconds_total"`
}

// FrontendStats are one frontend's counters.
type FrontendStats struct {
	// Requests are by result (ok, failed, aborted, client_gone,
	// bad_request, body_timeout, send_timeout, no_route, no_buffer,
	// not_implemented: CONNECT), then
	// status class (2xx ...).
	Requests          map[string]map[string]uint64 `json:"requests" metric:"xdpnet_requests_total" by:"result,class"`
	ClientConnections int64                        `json:"client_connections" metric:"xdpnet_client_connections"`
	// Refused are by reason: frontend_limit, engine_limit or budget.
	Refused map[string]uint64 `json:"connections_refused" metric:"xdpnet_connections_refused_total" by:"reason"`
	// ClientTimeouts are by reason: body (timeouts.body), send
	// (timeouts.send).
	ClientTimeouts map[string]uint64 `json:"client_timeouts" metric:"xdpnet_client_timeouts_total" by:"reason"`
	// Tunnels (tcp frontends' tunnels, http and https frontends'
	// WebSockets) are by result: ok, failed, reset, idle, cut,
	// not_implemented.
	Tunnels map[string]uint64 `json:"tunnels" metric:"xdpnet_tunnels_total" by:"result"`
	// TLSHandshakes are an https frontend's client connections by how
	// their TLS handshake went, counted as they close: full, resumed (a
	// session ticket, RFC 8446 section 2.2), failed (a bad or unfinished
	// handshake, also one cut by timeouts.header).
	TLSHandshakes map[string]uint64 `json:"tls_handshakes" metric:"xdpnet_tls_handshakes_total" by:"result"`
	// Routes are the requests a route (or the default route, "default")
	// took, by route, then status class.
	Routes map[string]map[string]uint64 `json:"routes" metric:"xdpnet_route_requests_total" by:"route,class"`
	// ProxyProtocol are client connections of a frontend with
	// proxy_protocol, by result: proxied, local, untrusted, missing,
	// malformed, timeout (the last three closed).
	ProxyProtocol map[string]uint64 `json:"proxy_protocol,omitempty" metric:"xdpnet_proxy_protocol_total" by:"result"`
}

// BackendStats are one backend's counters.
type BackendStats struct {
	Servers         map[string]*ServerStats `json:"servers" by:"server"`
	SocketsReplaced uint64                  `json:"sockets_replaced" metric:"xdpnet_backend_sockets_replaced_total"`
	// Failures are by reason (see failure).
	Failures     map[string]uint64 `json:"failures" metric:"xdpnet_backend_failures_total" by:"reason"`
	Retries      uint64            `json:"retries" metric:"xdpnet_retries_total"`
	Redispatches uint64            `json:"redispatches" metric:"xdpnet_redispatches_total"`
	// Reuse is the backend's pool; nil once a reload removed the backend.
	Reuse *reuse.Stats `json:"reuse,omitempty"`
}

// ServerStats are one backend server's counters.
type ServerStats struct {
	Requests          uint64 `json:"requests" metric:"xdpnet_backend_requests_total"`
	ConnectionsOpened uint64 `json:"connections_opened" metric:"xdpnet_backend_connections_opened_total"`
	ConnectErrors     uint64 `json:"connect_errors" metric:"xdpnet_backend_connect_errors_total"`
	// SilentConnections were closed for answering neither a request nor
	// a PING (the backend's PING of a connection whose request waits too long).
	SilentConnections uint64 `json:"silent_connections" metric:"xdpnet_backend_silent_connections_total"`
	// ResumedHandshakes are connections whose TLS handshake resumed a
	// session from a ticket (RFC 8446 section 2.2).
	ResumedHandshakes uint64 `json:"resumed_handshakes" metric:"xdpnet_backend_resumed_handshakes_total"`
	// EarlyRequests count requests sent in 0-RTT data (backend
	// early_data), by result: sent (every one), accepted (answered, not
	// 425), rejected (the server rejected the early data; sent again on
	// another connection), too_early (answered 425; sent again after the
	// handshake).
	EarlyRequests map[string]uint64 `json:"early_requests" metric:"xdpnet_backend_early_requests_total" by:"result"`
	// Up is false while health checks have taken the server out.
	Up bool `json:"up" metric:"xdpnet_server_up"`
}

// Snapshot reads the live counters into a snapshot. The backends' Reuse
// is left for the caller, which knows the current pools.
func (m *Counters) Snapshot() EngineStats {
	s := EngineStats{
		Frontends:        map[string]*FrontendStats{},
		Backends:         map[string]*BackendStats{},
		WorkerPicks:      map[string]uint64{},
		BackendConnsOpen: m.ConnsOpen.Load(),
		DrainCutRequests: uint64(m.DrainCut.Load()),
		AccessLogDropped: uint64(m.AccessLogDropped.Load()),
	}
	fe := func(name string) *FrontendStats {
		f := s.Frontends[name]
		if f == nil {
			f = &FrontendStats{Requests: map[string]map[string]uint64{}, Routes: map[string]map[string]uint64{}, Refused: map[string]uint64{},
				ProxyProtocol:  map[string]uint64{},
				ClientTimeouts: map[string]uint64{}, Tunnels: map[string]uint64{}, TLSHandshakes: map[string]uint64{}}
			s.Frontends[name] = f
		}
		return f
	}
	be := func(name string) *BackendStats {
		b := s.Backends[name]
		if b == nil {
			b = &BackendStats{Servers: map[string]*ServerStats{}, Failures: map[string]uint64{}}
			s.Backends[name] = b
		}
		return b
	}
	srv := func(k Labels) *ServerStats {
		b := be(k[0])
		sv := b.Servers[k[1]]
		if sv == nil {
			sv = &ServerStats{EarlyRequests: map[string]uint64{}}
			b.Servers[k[1]] = sv
		}
		return sv
	}
	m.Requests.Each(func(k Labels, n int64) {
		r := fe(k[0]).Requests
		if r[k[2]] == nil {
			r[k[2]] = map[string]uint64{}
		}
		r[k[2]][k[1]] = uint64(n)
	})
	m.RouteRequests.Each(func(k Labels, n int64) {
		r := fe(k[0]).Routes
		if r[k[1]] == nil {
			r[k[1]] = map[string]uint64{}
		}
		r[k[1]][k[2]] = uint64(n)
	})
	m.ProxyProtocol.Each(func(k Labels, n int64) { fe(k[0]).ProxyProtocol[k[1]] = uint64(n) })
	m.ClientConns.Each(func(k Labels, n int64) { fe(k[0]).ClientConnections = n })
	m.Refused.Each(func(k Labels, n int64) { fe(k[0]).Refused[k[1]] = uint64(n) })
	m.ClientTimeouts.Each(func(k Labels, n int64) { fe(k[0]).ClientTimeouts[k[1]] = uint64(n) })
	m.Tunnels.Each(func(k Labels, n int64) { fe(k[0]).Tunnels[k[1]] = uint64(n) })
	m.TLSHandshakes.Each(func(k Labels, n int64) { fe(k[0]).TLSHandshakes[k[1]] = uint64(n) })
	m.BackendRequests.Each(func(k Labels, n int64) { srv(k).Requests = uint64(n) })
	m.ConnsOpened.Each(func(k Labels, n int64) { srv(k).ConnectionsOpened = uint64(n) })
	m.ConnectErrors.Each(func(k Labels, n int64) { srv(k).ConnectErrors = uint64(n) })
	m.ServerUp.Each(func(k Labels, n int64) { srv(k).Up = n != 0 })
	m.SilentConns.Each(func(k Labels, n int64) { srv(k).SilentConnections = uint64(n) })
	m.Resumed.Each(func(k Labels, n int64) { srv(k).ResumedHandshakes = uint64(n) })
	m.EarlyRequests.Each(func(k Labels, n int64) { srv(k).EarlyRequests[k[2]] = uint64(n) })
	m.SocketsReplaced.Each(func(k Labels, n int64) { be(k[0]).SocketsReplaced = uint64(n) })
	m.Failures.Each(func(k Labels, n int64) { be(k[0]).Failures[k[1]] = uint64(n) })
	m.Retries.Each(func(k Labels, n int64) { be(k[0]).Retries = uint64(n) })
	m.Redispatches.Each(func(k Labels, n int64) { be(k[0]).Redispatches = uint64(n) })
	m.WorkerPicks.Each(func(k Labels, n int64) { s.WorkerPicks[k[0]] = uint64(n) })
	return s
}

// Summarize adds up the snapshot over frontends, backends and servers (the
// servers' count is the engine's business: it knows the current backends).
func (s *EngineStats) Summarize() Summary {
	var u Summary
	for _, f := range s.Frontends {
		for result, byClass := range f.Requests {
			for _, n := range byClass {
				u.Requests += float64(n)
				switch result {
				case "ok":
					u.RequestsOK += float64(n)
				case "aborted":
					u.RequestsAborted += float64(n)
				}
			}
		}
		u.Tunnels += total(f.Tunnels)
		u.ConnsRefused += total(f.Refused)
		u.ClientTimeouts += total(f.ClientTimeouts)
	}
	u.RequestsFailed = u.Requests - u.RequestsOK
	for _, b := range s.Backends {
		u.Retries += float64(b.Retries)
		u.Redispatches += float64(b.Redispatches)
		for _, sv := range b.Servers {
			u.BackendRequests += float64(sv.Requests)
			u.BackendConnsOpened += float64(sv.ConnectionsOpened)
			u.ConnectErrors += float64(sv.ConnectErrors)
		}
		if b.Reuse != nil {
			u.Reuse.Add(*b.Reuse)
		}
	}
	u.PicksByQueue = float64(s.WorkerPicks["rx_queue"])
	u.PicksByHash = float64(s.WorkerPicks["hash"])
	u.BackendConnsOpen = float64(s.BackendConnsOpen)
	return u
}

// total adds up the counters of a map.
func total(m map[string]uint64) float64 {
	var t float64
	for _, n := range m {
		t += float64(n)
	}
	return t
}
