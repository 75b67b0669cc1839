package admin

import (
	"reflect"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/engine/stats"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/reuse"
	"github.com/xdpnet/xdpnet/stack"
)

// snapshotCollector makes the /metrics series of a stats snapshot: every
// number in it, under the metric its field's tag names (see stats.Stats). It
// reads nothing else, so /metrics and /stats show the same figures.
type snapshotCollector struct{ snapshot func() stats.Stats }

var _ prometheus.Collector = snapshotCollector{}

// Describe sends nothing: the series depend on the snapshot's maps
// (frontends, servers, queues), which makes this an unchecked collector.
func (c snapshotCollector) Describe(chan<- *prometheus.Desc) {}

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	walkMetrics(reflect.ValueOf(s), nil, func(name string, labels []string, v float64) {
		var names, values []string
		for i := 0; i < len(labels); i += 2 {
			names, values = append(names, labels[i]), append(values, labels[i+1])
		}
		typ := prometheus.GaugeValue
		if strings.HasSuffix(name, "_total") {
			typ = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, metricHelp[name], names, nil), typ, v, values...)
	})
}

// walkMetrics calls emit for every number and bool in the struct v with
// the metric name its tag gives and its labels (name, value pairs): those
// of the maps above it (by) and those fixed in the tag (name{k=v,...}).
// A field with no metric tag that holds a struct, or a map of them, is
// walked; a number with none is left out, which the stats test reports.
func walkMetrics(v reflect.Value, labels []string, emit func(name string, labels []string, v float64)) {
	t := v.Type()
	for i := range t.NumField() {
		tag := fieldTag(t, t.Field(i))
		name, fixed := parseMetric(tag.Get("metric"))
		if name == "-" {
			continue
		}
		var by []string
		if b := tag.Get("by"); b != "" {
			by = strings.Split(b, ",")
		}
		walkValue(v.Field(i), name, append(labels[:len(labels):len(labels)], fixed...), by, emit)
	}
}

func walkValue(v reflect.Value, name string, labels, by []string, emit func(string, []string, float64)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkValue(v.Elem(), name, labels, by, emit)
		}
	case reflect.Struct:
		walkMetrics(v, labels, emit)
	case reflect.Map:
		if len(by) == 0 {
			return // no label for its keys: the stats test reports it
		}
		for it := v.MapRange(); it.Next(); {
			l := append(labels[:len(labels):len(labels)], by[0], it.Key().String())
			walkValue(it.Value(), name, l, by[1:], emit)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if name != "" {
			emit(name, labels, float64(v.Uint()))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if name != "" {
			emit(name, labels, float64(v.Int()))
		}
	case reflect.Float32, reflect.Float64:
		if name != "" {
			emit(name, labels, v.Float())
		}
	case reflect.Bool:
		if name != "" {
			emit(name, labels, float64(b2i(v.Bool())))
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fieldTag is f's tag, or for a type of another package, which cannot
// carry the engine's metric names, its entry in foreignTags.
func fieldTag(t reflect.Type, f reflect.StructField) reflect.StructTag {
	if tags, ok := foreignTags[t]; ok {
		return tags[f.Name]
	}
	return f.Tag
}

// parseMetric splits "name{k=v,k2=v2}" into the name and k, v, k2, v2.
func parseMetric(s string) (name string, labels []string) {
	name, rest, ok := strings.Cut(s, "{")
	if !ok {
		return name, nil
	}
	for kv := range strings.SplitSeq(strings.TrimSuffix(rest, "}"), ",") {
		k, v, _ := strings.Cut(kv, "=")
		labels = append(labels, k, v)
	}
	return name, labels
}

// foreignTags are the tags of the snapshot types other packages define,
// as they would be written on their fields.
var foreignTags = map[reflect.Type]map[string]reflect.StructTag{
	// The data plane's snapshot: its maps' keys are the labels, its
	// numbers those of the types below.
	reflect.TypeFor[dataplane.Stats](): {
		"Interfaces":    `by:"interface"`,
		"NetstackDrops": `metric:"xdpnet_netstack_drops_total" by:"dir,reason"`,
	},
	reflect.TypeFor[dataplane.DatagramBufferStats](): {
		"InUse":  `metric:"xdpnet_datagram_buffers_in_use"`,
		"Gets":   `metric:"xdpnet_datagram_buffer_gets_total"`,
		"Puts":   `metric:"xdpnet_datagram_buffer_puts_total"`,
		"Allocs": `metric:"xdpnet_datagram_buffer_allocs_total"`,
	},
	reflect.TypeFor[dataplane.InterfaceStats](): {
		"Queues":   `by:"queue"`,
		"Steering": `by:"queue"`,
	},
	reflect.TypeFor[dataplane.QueueStats](): {
		"UMEM":     ``,
		"Port":     ``,
		"Endpoint": ``,
	},
	reflect.TypeFor[reuse.Stats](): {
		"Attaches":      `metric:"xdpnet_reuse_attaches_total"`,
		"HitPrivate":    `metric:"xdpnet_reuse_hits_total{tree=private}"`,
		"HitAvail":      `metric:"xdpnet_reuse_hits_total{tree=avail}"`,
		"HitSafe":       `metric:"xdpnet_reuse_hits_total{tree=safe}"`,
		"HitIdle":       `metric:"xdpnet_reuse_hits_total{tree=idle}"`,
		"Takeovers":     `metric:"xdpnet_reuse_takeovers_total"`,
		"Misses":        `metric:"xdpnet_reuse_misses_total"`,
		"Dials":         `metric:"xdpnet_reuse_dials_total"`,
		"DialErrors":    `metric:"xdpnet_reuse_dial_errors_total"`,
		"OpenErrors":    `metric:"xdpnet_reuse_open_errors_total"`,
		"Reinsertions":  `metric:"xdpnet_reuse_reinsertions_total"`,
		"Evictions":     `metric:"xdpnet_reuse_evictions_total"`,
		"Released":      `metric:"xdpnet_reuse_released_total"`,
		"Retries":       `metric:"xdpnet_reuse_retries_total"`,
		"Collisions":    `metric:"xdpnet_reuse_collisions_total"`,
		"Queued":        `metric:"xdpnet_reuse_queued_total"`,
		"QueueTimeouts": `metric:"xdpnet_reuse_queue_timeouts_total"`,
		"StaleDone":     `metric:"xdpnet_reuse_stale_done_total"`,
		"ProbeFailures": `metric:"xdpnet_reuse_probe_failures_total"`,
		"Conns":         `metric:"xdpnet_reuse_owned_connections"`,
		"Idle":          `metric:"xdpnet_reuse_connections{tree=idle}"`,
		"Safe":          `metric:"xdpnet_reuse_connections{tree=safe}"`,
		"Avail":         `metric:"xdpnet_reuse_connections{tree=avail}"`,
		"Private":       `metric:"xdpnet_reuse_connections{tree=private}"`,
		"Leases":        `metric:"xdpnet_reuse_leases"`,
	},
	reflect.TypeFor[bufring.FrameStats](): {
		"Frames":        `metric:"xdpnet_umem_frames"`,
		"FrameSize":     `metric:"xdpnet_umem_frame_size_bytes"`,
		"Free":          `metric:"xdpnet_umem_frames_free"`,
		"Shared":        `metric:"xdpnet_umem_frames_shared"`,
		"Reserve":       `metric:"xdpnet_umem_rx_reserve_frames"`,
		"ReserveTarget": `metric:"xdpnet_umem_rx_reserve_target_frames"`,
		"ReserveTaken":  `metric:"xdpnet_umem_rx_reserve_taken_total"`,
		"Cached":        `metric:"xdpnet_umem_frames_cached"`,
		"InUse":         `metric:"xdpnet_umem_frames_in_use"`,
		"HighWater":     `metric:"xdpnet_umem_frames_high_water"`,
		"Failures":      `metric:"xdpnet_umem_alloc_failures_total"`,
		"Waits":         `metric:"xdpnet_umem_waits_total"`,
		"WaitFailures":  `metric:"xdpnet_umem_wait_failures_total"`,
		"Handoffs":      `metric:"xdpnet_umem_handoffs_total"`,
		"PassedOn":      `metric:"xdpnet_umem_passed_on_total"`,
		"Overflows":     `metric:"xdpnet_umem_overflows_total"`,
		"Waiting":       `metric:"xdpnet_umem_waiting"`,
		// A histogram of its own bucket layout and a per-cache list:
		// for /stats and debugging, not for dashboards.
		"WaitTime": `metric:"-"`,
		"Owners":   `metric:"-"`,
	},
	reflect.TypeFor[nic.Stats](): {
		"RxPackets":        `metric:"xdpnet_xsk_packets_total{dir=rx}"`,
		"TxPackets":        `metric:"xdpnet_xsk_packets_total{dir=tx}"`,
		"RxBytes":          `metric:"xdpnet_xsk_bytes_total{dir=rx}"`,
		"TxBytes":          `metric:"xdpnet_xsk_bytes_total{dir=tx}"`,
		"TxCompleted":      `metric:"xdpnet_xsk_tx_completed_total"`,
		"TxRingFull":       `metric:"xdpnet_xsk_tx_ring_full_total"`,
		"TxAllocShort":     `metric:"xdpnet_xsk_tx_alloc_short_total"`,
		"TxWaits":          `metric:"xdpnet_xsk_tx_waits_total"`,
		"TxWaitWakeups":    `metric:"xdpnet_xsk_tx_wait_wakeups_total"`,
		"TxKicks":          `metric:"xdpnet_xsk_tx_kicks_total"`,
		"TxKickBusy":       `metric:"xdpnet_xsk_tx_kick_busy_total"`,
		"TxKickRetries":    `metric:"xdpnet_xsk_tx_kick_retries_total"`,
		"TxKickErrors":     `metric:"xdpnet_xsk_tx_kick_errors_total"`,
		"LinkDown":         `metric:"xdpnet_xsk_link_down_total"`,
		"FillKicks":        `metric:"xdpnet_xsk_fill_kicks_total"`,
		"FillPoolEmpty":    `metric:"xdpnet_xsk_fill_pool_empty_total"`,
		"InvalidRelease":   `metric:"xdpnet_xsk_invalid_releases_total"`,
		"PollSleeps":       `metric:"xdpnet_xsk_poll_sleeps_total"`,
		"BusyPollHits":     `metric:"xdpnet_xsk_busy_poll_hits_total"`,
		"BindRetries":      `metric:"xdpnet_xsk_bind_retries_total"`,
		"ZeroCopyFallback": `metric:"xdpnet_xsk_zerocopy_fallback"`,
		"Kernel":           ``,
	},
	reflect.TypeFor[nic.KernelStats](): {
		"RxDropped":            `metric:"xdpnet_xsk_drops_total{reason=rx_dropped}"`,
		"RxInvalidDescs":       `metric:"xdpnet_xsk_drops_total{reason=rx_invalid_descs}"`,
		"TxInvalidDescs":       `metric:"xdpnet_xsk_drops_total{reason=tx_invalid_descs}"`,
		"RxRingFull":           `metric:"xdpnet_xsk_drops_total{reason=rx_ring_full}"`,
		"RxFillRingEmptyDescs": `metric:"xdpnet_xsk_drops_total{reason=fill_ring_empty}"`,
		"TxRingEmptyDescs":     `metric:"xdpnet_xsk_tx_ring_empty_total"`,
	},
	reflect.TypeFor[bpf.Counters](): {
		"Redirected": `metric:"xdpnet_xdp_frames_total{verdict=redirected}"`,
		"Passed":     `metric:"xdpnet_xdp_frames_total{verdict=passed}"`,
		"NoSocket":   `metric:"xdpnet_xdp_frames_total{verdict=no_socket}"`,
		"Malformed":  `metric:"xdpnet_xdp_frames_total{verdict=malformed}"`,
	},
	// The drop reasons are those of stack.QueueStats.Drops.
	reflect.TypeFor[stack.QueueStats](): {
		"RXFrames":           `metric:"xdpnet_endpoint_frames_total{dir=rx}"`,
		"TXFrames":           `metric:"xdpnet_endpoint_frames_total{dir=tx}"`,
		"RXBytes":            `metric:"xdpnet_endpoint_bytes_total{dir=rx}"`,
		"TXBytes":            `metric:"xdpnet_endpoint_bytes_total{dir=tx}"`,
		"RXBatches":          `metric:"xdpnet_endpoint_rx_batches_total"`,
		"RXDropShort":        `metric:"xdpnet_endpoint_drops_total{dir=rx,reason=short}"`,
		"RXDropOtherHost":    `metric:"xdpnet_endpoint_drops_total{dir=rx,reason=other_host}"`,
		"RXDropChecksumIPv4": `metric:"xdpnet_endpoint_drops_total{dir=rx,reason=checksum_ipv4}"`,
		"RXDropChecksumTCP":  `metric:"xdpnet_endpoint_drops_total{dir=rx,reason=checksum_tcp}"`,
		"RXDropChecksumUDP":  `metric:"xdpnet_endpoint_drops_total{dir=rx,reason=checksum_udp}"`,
		"RXDropChecksumICMP": `metric:"xdpnet_endpoint_drops_total{dir=rx,reason=checksum_icmp}"`,
		"TXDropNoFrame":      `metric:"xdpnet_endpoint_drops_total{dir=tx,reason=no_frame}"`,
		"TXDropRingFull":     `metric:"xdpnet_endpoint_drops_total{dir=tx,reason=ring_full}"`,
		"TXDropLinkDown":     `metric:"xdpnet_endpoint_drops_total{dir=tx,reason=link_down}"`,
		"TXDropTooBig":       `metric:"xdpnet_endpoint_drops_total{dir=tx,reason=too_big}"`,
		"TXDropError":        `metric:"xdpnet_endpoint_drops_total{dir=tx,reason=error}"`,
		"RXUnverified":       `metric:"xdpnet_endpoint_rx_unverified_total"`,
		"RXErrors":           `metric:"xdpnet_endpoint_errors_total{dir=rx}"`,
		"TXErrors":           `metric:"xdpnet_endpoint_errors_total{dir=tx}"`,
		"RXUDPFast":          `metric:"xdpnet_endpoint_udp_fast_datagrams_total{dir=rx}"`,
		"TXUDPFast":          `metric:"xdpnet_endpoint_udp_fast_datagrams_total{dir=tx}"`,
		"TXPackets":          `metric:"xdpnet_endpoint_tx_packets_total"`,
		"TXGSOPackets":       `metric:"xdpnet_endpoint_tx_gso_packets_total"`,
		"TXGSOSegments":      `metric:"xdpnet_endpoint_tx_gso_segments_total"`,
		"TXKicks":            `metric:"xdpnet_endpoint_tx_kicks_total"`,
		"TXWaits":            `metric:"xdpnet_endpoint_tx_waits_total"`,
		"TXWaitRounds":       `metric:"xdpnet_endpoint_tx_wait_rounds_total"`,
	},
}

// metricHelp is the help text of every metric the snapshots give. A name
// ending in _total is a counter, any other a gauge.
var metricHelp = map[string]string{
	"xdpnet_requests_total":                     "HTTP requests answered by frontends, by status class and result (ok, failed, aborted, client_gone, bad_request, body_timeout, send_timeout: the client did not take a response write within timeouts.send, no_route: 404, no route matched and the frontend has no backend; no_buffer: 503, no payload buffer within buffers.wait; not_implemented: 501, a CONNECT request or a WebSocket upgrade to a backend without HTTP/1.1 Upgrade; upgraded: a WebSocket, counted when it ends).",
	"xdpnet_route_requests_total":               "HTTP requests by frontend, route (\"default\": the frontend's own backend) and status class.",
	"xdpnet_client_connections":                 "Open client connections per frontend.",
	"xdpnet_connections_refused_total":          "Client connections refused by a connection limit, by reason: frontend_limit or engine_limit (max_connections), budget (no TCP buffer reservation within buffers.accept_wait). TCP ones are closed right after accept, QUIC ones get CONNECTION_REFUSED.",
	"xdpnet_client_timeouts_total":              "Requests cut because the client was too slow, by reason: body (a request body read waited longer than timeouts.body), send (a response write waited longer than timeouts.send for the client to read).",
	"xdpnet_tls_handshakes_total":               "Client connections of https frontends by how their TLS handshake went, counted when they close: full, resumed (session ticket), failed (bad, unfinished or timed out).",
	"xdpnet_tunnels_total":                      "TCP connections tunnelled as raw streams, and WebSockets switched by http and https frontends, by result: ok, failed (no stream or backend connection opened, or no answer from the server), reset (either side failed), idle (cut by the idle timeout), cut (still open at the drain deadline), not_implemented (a WebSocket upgrade routed to an h2, h2c or h3 backend: 501).",
	"xdpnet_backend_requests_total":             "Requests and tunnels that reached a backend server (response headers or an open stream).",
	"xdpnet_backend_connections_opened_total":   "Backend connections opened, QUIC or TCP (handshakes completed).",
	"xdpnet_backend_connect_errors_total":       "Failed backend connection attempts.",
	"xdpnet_backend_connections_open":           "Backend connections open now, QUIC or TCP.",
	"xdpnet_backend_sockets_replaced_total":     "Backend UDP sockets found failed for good and replaced by a new one.",
	"xdpnet_backend_silent_connections_total":   "Backend connections closed because a request waited timeouts.probe for its response and the connection then answered no PING either.",
	"xdpnet_backend_resumed_handshakes_total":   "Backend connections whose TLS handshake resumed a session from a ticket the server issued earlier.",
	"xdpnet_backend_early_requests_total":       "Requests sent to a backend in 0-RTT data (early_data), by result: sent, accepted, rejected (early data rejected, sent again on another connection), too_early (425, sent again after the handshake).",
	"xdpnet_backend_failures_total":             "Requests and tunnels the gateway answered with an error of its own (502, 503, 504 or a refused tunnel), by reason.",
	"xdpnet_drain_cut_requests_total":           "HTTP requests still in flight when a drain's deadline passed, cut (tunnels cut count in xdpnet_tunnels_total{result=\"cut\"}).",
	"xdpnet_proxy_protocol_total":               "Client connections of frontends with proxy_protocol, by result: proxied (a trusted header gave the client address), local (a trusted LOCAL or address-less header), untrusted (not a trusted source: served as is), missing, malformed, timeout (a trusted source without a valid header in time: closed).",
	"xdpnet_access_log_dropped_total":           "Access log lines dropped because the writer's queue (access_log.queue) was full; the data path never waits for the log.",
	"xdpnet_datagram_buffers_in_use":            "UDP datagrams the data plane's fast path holds for sockets now (netstack, stack-wide).",
	"xdpnet_datagram_buffer_gets_total":         "Datagram buffers taken by the UDP fast path's receive queues.",
	"xdpnet_datagram_buffer_puts_total":         "Datagram buffers given back (read by the socket or dropped at its close).",
	"xdpnet_datagram_buffer_allocs_total":       "Datagram buffers allocated because none was pooled.",
	"xdpnet_payload_buffer_limit_bytes":         "The payload allowance of buffers.memory: what the UMEM leaves for the 32 KiB buffers proxied response bodies are copied through.",
	"xdpnet_payload_buffer_live_bytes":          "Memory of the payload buffers allocated now, held or pooled (at most the limit).",
	"xdpnet_payload_buffers_in_use":             "Payload buffers held by requests now (one per proxied response in flight).",
	"xdpnet_payload_buffer_gets_total":          "Payload buffers taken.",
	"xdpnet_payload_buffer_puts_total":          "Payload buffers released.",
	"xdpnet_payload_buffer_allocs_total":        "Payload buffers allocated because none was pooled.",
	"xdpnet_payload_buffer_waits_total":         "Requests that waited for a payload buffer because the budget was spent.",
	"xdpnet_payload_buffer_wait_failures_total": "Waits for a payload buffer that ended without one: buffers.wait passed (503, result no_buffer), the client left, or shutdown.",
	"xdpnet_payload_buffer_waiting":             "Requests waiting for a payload buffer now.",
	"xdpnet_payload_buffer_wait_seconds_total":  "Total time of the waits for a payload buffer that got one.",
	"xdpnet_tcp_buffer_reserved_bytes":          "Bytes of buffers.memory the client TCP connections reserve for their netstack buffers now (tcp_receive.max + tcp_send.max each; a parked one its parked buffers).",
	"xdpnet_tcp_buffer_backend_reserved_bytes":  "Bytes of buffers.memory the HTTP/2 and HTTP/1.1 backend connections reserve for their netstack buffers now (tcp_receive.max + tcp_send.max each).",
	"xdpnet_tcp_buffer_waits_total":             "New TCP and QUIC connections (client, or backend dials) that waited for their buffer reservation because the budget was spent.",
	"xdpnet_tcp_buffer_wait_failures_total":     "Waits for a TCP or QUIC buffer reservation that ended without one: buffers.accept_wait passed (refused, reason budget), a backend dial's timeouts.connect passed, or shutdown.",
	"xdpnet_tcp_buffer_waiting":                 "New TCP and QUIC connections (client, or backend dials) waiting for their buffer reservation now.",
	"xdpnet_quic_buffer_reserved_bytes":         "Bytes of buffers.memory the h3 frontends' client QUIC connections reserve now (quic_receive.max + quic_send each).",
	"xdpnet_quic_buffer_backend_reserved_bytes": "Bytes of buffers.memory the backend QUIC connections (h3, raw, health checks) reserve now (quic_receive.max + quic_send each).",
	"xdpnet_tcp_buffer_small_resumes_total":     "Parked client connections resumed with their parked 4 KiB buffers because the budget had no room for their full ones.",
	"xdpnet_retries_total":                      "Backend attempts after the first, per backend.",
	"xdpnet_redispatches_total":                 "Retries sent to a server chosen again by the balancer.",
	"xdpnet_server_up":                          "1 if the server takes traffic, 0 if health checks took it out.",
	"xdpnet_worker_picks_total":                 "Client connections given to a worker, by how it was chosen: rx_queue (the queue the connection arrived on) or hash (of the client address).",

	"xdpnet_reuse_attaches_total":       "Requests and tunnels given a backend stream by the reuse pool.",
	"xdpnet_reuse_hits_total":           "Attaches served by a pooled connection, by the tree it came from: private (the session's), avail, safe, idle.",
	"xdpnet_reuse_takeovers_total":      "Attaches served by an idle connection taken from another worker.",
	"xdpnet_reuse_misses_total":         "Attaches that had to dial a new connection.",
	"xdpnet_reuse_dials_total":          "Backend connections the pool opened (for requests and warm-up).",
	"xdpnet_reuse_dial_errors_total":    "Backend connections the pool failed to open.",
	"xdpnet_reuse_open_errors_total":    "Chosen connections that died before their stream was opened.",
	"xdpnet_reuse_reinsertions_total":   "Full connections put back into avail when the server granted stream credit.",
	"xdpnet_reuse_evictions_total":      "Idle connections closed (purge, idle age, idle limit, max reuse, drain, session limit).",
	"xdpnet_reuse_released_total":       "Dead connections released from the pool.",
	"xdpnet_reuse_retries_total":        "Requests sent again on a fresh connection after their reused connection died under them (reuse.Worker.Retry).",
	"xdpnet_reuse_collisions_total":     "Pool buckets created whose hash was already used by other parameters.",
	"xdpnet_reuse_queued_total":         "Waits of a request for stream credit or a dial slot (reuse.max_dials, reuse.max_conns).",
	"xdpnet_reuse_queue_timeouts_total": "Requests that waited timeouts.queue for a stream and got 503.",
	"xdpnet_reuse_stale_done_total":     "Lease.Done calls on a lease already done (ignored).",
	"xdpnet_reuse_probe_failures_total": "Liveness pings of pooled connections that failed (the connection was closed).",
	"xdpnet_reuse_owned_connections":    "Backend connections the pool owns, dials in progress included.",
	"xdpnet_reuse_connections":          "Pooled backend connections by tree.",
	"xdpnet_reuse_leases":               "Streams (or connection credit) handed out and not yet done.",

	"xdpnet_umem_frames":                   "UMEM frames per queue.",
	"xdpnet_umem_frame_size_bytes":         "Size of a UMEM frame.",
	"xdpnet_umem_frames_free":              "UMEM frames not held by users (shared ring, RX reserve and caches).",
	"xdpnet_umem_frames_shared":            "UMEM frames in the shared free ring.",
	"xdpnet_umem_rx_reserve_frames":        "UMEM frames in the RX reserve now.",
	"xdpnet_umem_rx_reserve_target_frames": "Configured level of the RX reserve.",
	"xdpnet_umem_rx_reserve_taken_total":   "Frames receive-side waiters took from the RX reserve.",
	"xdpnet_umem_frames_cached":            "Free UMEM frames in per-worker caches.",
	"xdpnet_umem_frames_in_use":            "UMEM frames held outside the free rings (RX/TX rings, netstack, caches excluded).",
	"xdpnet_umem_frames_high_water":        "Largest number of UMEM frames seen outside the shared rings.",
	"xdpnet_umem_alloc_failures_total":     "Frame allocations that came back empty or short.",
	"xdpnet_umem_waits_total":              "Waits for a free frame that had to queue.",
	"xdpnet_umem_wait_failures_total":      "Waits for a free frame that gave up.",
	"xdpnet_umem_handoffs_total":           "Frames released straight to a waiter.",
	"xdpnet_umem_passed_on_total":          "Frames a waiter received after giving up and passed on.",
	"xdpnet_umem_overflows_total":          "Released frames dropped because the shared ring was full (a double or foreign release).",
	"xdpnet_umem_waiting":                  "Goroutines waiting for a free frame now.",

	"xdpnet_xsk_packets_total":          "AF_XDP socket counters.",
	"xdpnet_xsk_bytes_total":            "Bytes of the descriptors the AF_XDP socket received and placed on its TX ring.",
	"xdpnet_xsk_tx_completed_total":     "Frames the kernel reported sent (completion ring).",
	"xdpnet_xsk_tx_ring_full_total":     "Descriptors that found the TX ring full.",
	"xdpnet_xsk_tx_alloc_short_total":   "TX frame allocations that found fewer free frames than asked.",
	"xdpnet_xsk_tx_kicks_total":         "sendto(2) wake-ups issued for the TX rings; per TX packet, it shows how well sends are batched.",
	"xdpnet_xsk_tx_kick_busy_total":     "TX kicks the kernel answered EAGAIN or EBUSY without progress.",
	"xdpnet_xsk_tx_kick_retries_total":  "TX kicks the ports made on their own because a kick left frames on the TX ring (completion ring full, device busy, link down).",
	"xdpnet_xsk_tx_kick_errors_total":   "TX kicks that failed otherwise (ENXIO, ENOBUFS, ...).",
	"xdpnet_xsk_link_down_total":        "TX kicks that found the link down.",
	"xdpnet_xsk_fill_kicks_total":       "recvfrom(2) wake-ups issued for the fill ring.",
	"xdpnet_xsk_fill_pool_empty_total":  "Fill-ring refills that found the frame pool empty.",
	"xdpnet_xsk_tx_waits_total":         "Sends that slept until frames or TX ring room came back (no free UMEM frame, or the TX ring full).",
	"xdpnet_xsk_tx_wait_wakeups_total":  "Wakeups of those sleeps: frames came back, or a poll of the completion ring (intervals doubling from 20µs to 1ms).",
	"xdpnet_xsk_invalid_releases_total": "Descriptors the port refused to release: no frame of its own.",
	"xdpnet_xsk_poll_sleeps_total":      "Waits for the rings that slept in the runtime poller.",
	"xdpnet_xsk_busy_poll_hits_total":   "Waits for the rings the busy-poll spin satisfied.",
	"xdpnet_xsk_bind_retries_total":     "AF_XDP binds retried because the queue was still busy.",
	"xdpnet_xsk_zerocopy_fallback":      "1 if zero-copy was asked for (auto) and the socket fell back to copy mode.",
	"xdpnet_xsk_drops_total":            "Frames and descriptors the kernel dropped at an AF_XDP socket (XDP_STATISTICS), per queue and reason: fill_ring_empty, rx_ring_full, rx_dropped, rx_invalid_descs, tx_invalid_descs.",
	"xdpnet_xsk_tx_ring_empty_total":    "Kernel wake-ups that found the TX ring empty (XDP_STATISTICS).",
	"xdpnet_xdp_frames_total":           "Frames seen by the steering program, per RX queue (dedicated or not; \"other\": above the highest dedicated one) and verdict. It drops none: no_socket and malformed frames go to the kernel.",

	"xdpnet_endpoint_frames_total":             "Frames the netstack endpoint took from the RX ring and put on the TX ring.",
	"xdpnet_endpoint_bytes_total":              "Bytes of those frames.",
	"xdpnet_endpoint_rx_batches_total":         "Non-empty receive batches.",
	"xdpnet_endpoint_drops_total":              "Frames the netstack endpoint dropped before or after netstack, per queue, direction and reason (see stack.QueueStats.Drops).",
	"xdpnet_endpoint_rx_unverified_total":      "Received frames whose transport checksum the endpoint could not check.",
	"xdpnet_endpoint_errors_total":             "Receive or wait errors, and transmit errors other than ring full and link down, from the port.",
	"xdpnet_endpoint_udp_fast_datagrams_total": "Datagrams of connected or address-bound UDP sockets (backend QUIC, HTTP/3 frontends) moved between frames and socket without the netstack.",
	"xdpnet_endpoint_tx_packets_total":         "Packets netstack sent (a GSO segment counts once).",
	"xdpnet_endpoint_tx_gso_packets_total":     "GSO segments cut into frames.",
	"xdpnet_endpoint_tx_gso_segments_total":    "Frames GSO segments were cut into.",
	"xdpnet_endpoint_tx_kicks_total":           "Transmit calls of the endpoint.",
	"xdpnet_endpoint_tx_waits_total":           "Sends that had to wait for a frame or ring room.",
	"xdpnet_endpoint_tx_wait_rounds_total":     "Sleeps of those sends until frames or ring room came back, each followed by a retry (no spinning: a few per wait).",
	"xdpnet_netstack_drops_total":              "Packets netstack dropped, stack-wide (netstack counts per stack, not per interface or queue), by direction and reason (see stack.Stack.Drops).",
}
