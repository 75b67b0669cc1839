package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/xdpnet/xdpnet/nic"
)

// Config is the whole gateway configuration, read from YAML by [Load]
// or [Parse]. Durations are Go duration strings ("250ms", "30s").
type Config struct {
	// Dataplane chooses the network stack the frontends and backends run
	// on: "xdp" (AF_XDP ports on the listed interfaces, gVisor netstack)
	// or "kernel" (ordinary kernel sockets; interfaces are then ignored
	// except for their addresses). Default "xdp".
	Dataplane string `yaml:"dataplane"`
	// Workers is the number of workers on the kernel data plane (default:
	// GOMAXPROCS). On the xdp data plane there is one worker per dedicated
	// queue and Workers must be unset or equal to that count.
	Workers int `yaml:"workers"`
	// Admin is the address of the admin HTTP endpoint (metrics, health,
	// stats). It is always a kernel socket, never a data-plane port.
	// Default 127.0.0.1:9900; "off" disables it.
	Admin string `yaml:"admin"`
	// AdminPublic allows an Admin address that is not loopback (0.0.0.0,
	// a LAN address): the endpoint has no authentication and /stats and
	// /metrics describe the whole gateway, so exposing it is an explicit
	// choice, logged as a warning at start. Default false.
	AdminPublic bool `yaml:"admin_public"`
	// AdminPprof serves Go's runtime profiles (net/http/pprof) under
	// /debug/pprof/ on the admin endpoint, to profile the gateway where it
	// runs. A CPU profile costs CPU while it is taken and the endpoint
	// has no authentication, so it is off by default.
	AdminPprof bool `yaml:"admin_pprof"`
	// MaxConnections bounds the client connections (TCP connections of
	// http and tcp frontends, QUIC connections of h3 frontends) open over
	// all frontends at once. Above it a new TCP connection is closed
	// right after accept (the data plane's listen backlog has already
	// completed its handshake: it is not refused at SYN) and a new QUIC
	// connection is refused with CONNECTION_REFUSED; each refusal is
	// counted in xdpnet_connections_refused_total. Default 100000. A
	// reload applies a new value to new connections.
	MaxConnections int         `yaml:"max_connections"`
	Log            LogConfig   `yaml:"log"`
	Buffers        Buffers     `yaml:"buffers"`
	Interfaces     []Interface `yaml:"interfaces"`
	Frontends      []Frontend  `yaml:"frontends"`
	Backends       []Backend   `yaml:"backends"`
	// AccessLog, when set, logs every HTTP request (see [AccessLog]).
	AccessLog *AccessLog `yaml:"access_log"`
	// GC tunes Go's garbage collector (see [GC]).
	GC GC `yaml:"gc"`
}

// LogConfig sets the slog handler.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

// Buffers sizes the UMEM frame pool of each port and bounds the engine's
// buffer memory.
type Buffers struct {
	Frames    int `yaml:"frames"`     // frames per port (power of two), default 8192
	FrameSize int `yaml:"frame_size"` // 2048 (default) or 4096
	Cache     int `yaml:"cache"`      // per-worker cache, default 256
	Reserve   int `yaml:"reserve"`    // RX reserve, default Frames/8
	// Memory is the budget of the engine's packet, payload and TCP
	// buffers: the UMEM frames of every port (ports × frames ×
	// frame_size, fixed at start); what the UMEM leaves is shared, in one
	// FIFO, by the 32 KiB payload buffers proxied response bodies are
	// copied through (one per response in flight) and, on the xdp data
	// plane, the reservations of client TCP connections (http, https and
	// tcp frontends): each reserves tcp_receive.max + tcp_send.max, the
	// most netstack buffers for it, from its accept to its close (see
	// AcceptWait), and together they may take all but two payload
	// buffers of what the UMEM leaves (those stay for the transfers of
	// the connections admitted); while an HTTP/1.1 connection is parked idle its
	// buffers are cut to netstack's 4 KiB floor and it reserves 8 KiB
	// (see TCPParkedBuffers).
	// "256MiB", "1GiB" or bytes. Default 0: the UMEM plus 64 MiB of
	// payload buffers (2048 responses in flight), TCP and QUIC
	// reservations counted (/stats, metrics) but not bounded. The HTTP/2
	// and HTTP/1.1 backend connections the engine dials reserve as much
	// each, waiting up to the backend's timeouts.connect (then the
	// request gets 503, result no_buffer). QUIC connections, client (h3
	// frontends) and backend (h3, raw), reserve quic_receive.max +
	// quic_send each on either data plane (see QUICReceive), a client one
	// from its first Initial packet with the same wait and refusal as a
	// TCP one (CONNECTION_REFUSED). It does not cover quic-go's queue of
	// unprocessed packets, the Go HTTP servers' and clients' own
	// buffers, or request bodies. A streaming response
	// (gRPC stream, server-sent events) holds its buffer while it lasts.
	// A reload does not change it.
	Memory Size `yaml:"memory"`
	// Wait is how long a request waits, in a FIFO queue, for a payload
	// buffer when the budget is spent; then it is answered 503 with
	// Retry-After and counted with result no_buffer. The backend has not
	// seen it then: the buffer is taken before the request is sent.
	// Default 5s.
	Wait Duration `yaml:"wait"`
	// TXWait is how long a packet send on the xdp data plane sleeps for a
	// free UMEM frame or TX ring room (woken when frames come back)
	// before it drops the rest of its batch, counted per queue
	// (xdpnet_endpoint_drops_total{dir="tx"}); TCP retransmits what was
	// dropped. It holds up the sending connection's netstack path
	// meanwhile, so keep it short: 0..1s, default 0 = 2ms.
	TXWait Duration `yaml:"tx_wait"`
	// AcceptWait is how long a new client TCP connection waits for its
	// reservation (see Memory) when the budget is spent, in a FIFO queue
	// served before the requests waiting for payload buffers (which keep
	// two buffers' room the reservations cannot take); then it is
	// closed and counted in xdpnet_connections_refused_total with reason
	// budget, and connections accepted after it are refused at once
	// until one gets its reservation. The accept loop waits meanwhile:
	// later connections queue in the listen backlog, as behind a full
	// kernel accept queue. Default 1s.
	AcceptWait Duration `yaml:"accept_wait"`
	// TCPReceive and TCPSend bound netstack's TCP buffers of each
	// connection on the xdp data plane (the kernel stack has its sysctls):
	// Default is a connection's initial buffer, Max the ceiling of its
	// auto-tuning (gVisor's TCPReceiveBufferSizeRangeOption and
	// TCPSendBufferSizeRangeOption; the floor stays 4 KiB). Defaults 1MiB
	// and 8MiB, the stack package's. Netstack allocates them as data
	// arrives; a client connection reserves both maxima in buffers.memory
	// (see Memory), so with a bounded budget size them for the
	// connections expected at once.
	TCPReceive TCPBuffer `yaml:"tcp_receive"`
	TCPSend    TCPBuffer `yaml:"tcp_send"`
	// QUICReceive bounds what quic-go buffers of the data each QUIC
	// connection receives (the h3 frontends' client connections and the
	// h3 and raw backend connections the engine dials), on either data
	// plane: its connection-level flow control window (RFC 9000 section
	// 4), Default the initial one, Max the ceiling of quic-go's
	// auto-tuning; a stream's window is quic-go's (512 KiB, auto-tuned up
	// to 6 MiB) within them. Defaults 512KiB and 8MiB. QUICSend is the
	// allowance for what a connection keeps of the data it sends until
	// the peer acknowledges it, which the peer's flow control window and
	// the congestion window bound, not this key; default quic_receive.max.
	// Each QUIC connection reserves quic_receive.max + quic_send in
	// buffers.memory from its first packet (or dial) to its end: see
	// QUICReservation.
	QUICReceive TCPBuffer `yaml:"quic_receive"`
	QUICSend    Size      `yaml:"quic_send"`
}

// TCPBuffer is the initial size and ceiling of one direction's TCP buffer.
type TCPBuffer struct {
	Default Size `yaml:"default"`
	Max     Size `yaml:"max"`
}

// Interface is one NIC whose queues the engine owns on the xdp data plane.
type Interface struct {
	Name string `yaml:"name"`
	// Queues are the dedicated queue ids; one worker runs per queue.
	Queues []int `yaml:"queues"`
	// XDPMode is "native", "generic" or "auto" (native, falling back to
	// generic). Default "auto".
	XDPMode string `yaml:"xdp_mode"`
	// ZeroCopy is "on", "off" or "auto" (try, fall back to copy mode).
	// Default "auto".
	ZeroCopy string `yaml:"zero_copy"`
	// NTuple is "on", "off" or "auto": whether the engine installs ethtool
	// n-tuple rules (package nic/ntuple) steering UDP and TCP to each of
	// Addresses to the dedicated Queues at start, and removes them on
	// Close. "auto" runs on without them when the driver has no flow
	// steering (veth); "on" makes that a start error. Default "auto".
	NTuple string `yaml:"ntuple"`
	// Addresses are owned by the netstack (not the kernel), with prefix.
	Addresses []string `yaml:"addresses"`
	// Gateway is an optional default route via this interface.
	Gateway string `yaml:"gateway"`
	// BusyPoll is how long a queue spins on its RX ring before parking
	// in the runtime poller: lower latency for a core per queue. Default 0 (sleep at
	// once); worth it only with cores to spare: on a 2-core machine 50µs
	// won 3 of 6 proxy benchmark rounds against 0 (bench/engine.md), the
	// spin taking the CPU the other goroutines of the request need.
	BusyPoll Duration `yaml:"busy_poll"`

	addrs []netip.Prefix
	gw    netip.Addr
}

// Frontend protocols.
const (
	ProtoHTTP  = "http"  // HTTP/1.1 and h2c (prior knowledge) on TCP
	ProtoHTTPS = "https" // TLS 1.2/1.3 on TCP, ALPN h2 and http/1.1 (needs tls)
	ProtoH3    = "h3"    // HTTP/3 on UDP (tls, or a self-signed certificate)
	ProtoTCP   = "tcp"   // each TCP connection becomes one raw stream
)

// Frontend is one listening socket.
type Frontend struct {
	// Name labels the frontend's metrics and log lines and is what
	// alt_svc refers to; unique, default fe<index>.
	Name     string `yaml:"name"`
	Listen   string `yaml:"listen"`
	Protocol string `yaml:"protocol"`
	Backend  string `yaml:"backend"`
	// TLS is the certificates of an https or h3 frontend (see ServerTLS).
	TLS *ServerTLS `yaml:"tls"`
	// AltSvc is the h3 frontend an http or https frontend advertises (see
	// AltSvc; by default an https frontend advertises the h3 frontend on
	// its own address and port).
	AltSvc   *AltSvc      `yaml:"alt_svc"`
	Timeouts FrontTimeout `yaml:"timeouts"`
	// MaxHeaderBytes bounds request headers (http); default 64 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxFrameSize is the largest HTTP/2 frame http (h2c) and https
	// frontends accept from clients (SETTINGS_MAX_FRAME_SIZE, RFC 9113
	// section 6.5.2). net/http's HTTP/2 server keeps a read buffer the size
	// of the largest frame received for as long as the connection lasts,
	// idle or not; with its own default (1 MiB) an upload from Go's client
	// (512 KiB frames) leaves that much with each idle connection. Default
	// 16384, the protocol's initial value (HAProxy's too); 16384 to
	// 16777215.
	MaxFrameSize int `yaml:"max_frame_size"`
	// MaxConnections bounds this frontend's client connections, within
	// the engine's MaxConnections (refused the same way). Default 0: only
	// the engine's limit applies.
	MaxConnections int `yaml:"max_connections"`
	// Routes send requests by host and path to backends, first match in
	// order (see [Route]); http, https and h3 frontends. Backend is then
	// the default route, where requests no route matches go; without it
	// they get 404.
	Routes []Route `yaml:"routes"`
	// AccessLog false keeps this frontend's requests out of the engine's
	// access log. Default true.
	AccessLog *bool `yaml:"access_log"`
	// ProxyProtocol, when set, reads a PROXY protocol v2 header from
	// trusted load balancers (see [ProxyProtocol]); http, https and tcp
	// frontends.
	ProxyProtocol *ProxyProtocol `yaml:"proxy_protocol"`

	addr   netip.AddrPort
	altSvc string
}

// Addr is the validated listen address (set by [Config.Validate]).
func (f *Frontend) Addr() netip.AddrPort { return f.addr }

// FrontTimeout bounds client-side waits.
type FrontTimeout struct {
	// Header bounds the time a client may take to send request headers
	// (slowloris protection); on https and h3 frontends it also bounds the
	// TLS handshake. Default 10s.
	Header Duration `yaml:"header"`
	// Idle bounds an idle keep-alive connection or tunnel. Default 60s.
	// A connection with requests in flight is not idle, however silent
	// they are (h3: the frontend PINGs its clients every Idle/2 so that
	// QUIC's idle timeout, also Idle, does not cut it).
	Idle Duration `yaml:"idle"`
	// Body bounds the wait for each read of a request body (http and h3
	// frontends): the time between two successive reads, as nginx's
	// client_body_timeout, not the whole upload, so a large body at a
	// steady rate is never cut while a client that stalls mid-body
	// (slowhttptest -B) is. A cut request gets 408 if no response
	// started and is counted in xdpnet_client_timeouts_total{reason="body"}.
	// While the response streams to the client the wait restarts with each
	// chunk sent, so a quiet client of a live bidirectional stream (gRPC)
	// is not cut. Default 30s.
	Body Duration `yaml:"body"`
	// Send bounds each write of a response body to the client (http, https
	// and h3 frontends): the time a chunk of up to 32 KiB may take to
	// leave, as nginx's send_timeout, not the whole response, so a large
	// download at any steady rate is never cut while a client that stops
	// reading (slowhttptest -X, a stalled TCP window or HTTP/2 or HTTP/3
	// flow-control window) is: without it such a client would hold its
	// connection, its payload buffer (buffers.memory) and its backend
	// stream for ever. A cut response resets the client's stream (the
	// HTTP/1.1 connection is closed) and is counted in
	// xdpnet_client_timeouts_total{reason="send"}. Default 60s, nginx's.
	// On kernel sockets a blocked write wakes only once a third of the
	// socket's send buffer has drained (as nginx's does, on EPOLLOUT), so
	// the slowest reader kept is about that third per timeout: 23 KB/s
	// with Linux's 4 MiB send buffer at 60s (by that rule, not measured).
	Send Duration `yaml:"send"`
}

// Backend balancing algorithms.
const (
	BalanceRoundRobin = "roundrobin"
	BalanceLeastConn  = "leastconn"
	BalanceHash       = "hash"
)

// Backend protocols.
const (
	BackendH3  = "h3"  // HTTP/3, one request per stream
	BackendRaw = "raw" // raw QUIC streams (ALPN xdpnet-raw), one per TCP connection
	// HTTP/2 over TLS (ALPN h2, verified with tls), one stream per
	// request (RFC 9113).
	BackendH2 = "h2"
	// HTTP/2 over cleartext TCP with prior knowledge (RFC 9113 section 3.3).
	BackendH2C = "h2c"
	// HTTP/1.1 over cleartext TCP, one request at a time per connection.
	BackendHTTP1 = "http1"
	// HTTP/1.1 over TLS (ALPN http/1.1, verified with tls).
	BackendHTTP1TLS = "http1-tls"
)

// HTTPBackend reports whether a backend protocol carries HTTP requests
// (every one but raw): http, https and h3 frontends reach those.
func HTTPBackend(protocol string) bool {
	switch protocol {
	case BackendH3, BackendH2, BackendH2C, BackendHTTP1, BackendHTTP1TLS:
		return true
	}
	return false
}

// Reuse policies, after HAProxy's http-reuse. HAProxy's safe keeps a
// client's first request off idle connections because on HTTP/1 a request
// sent as the server closes the connection may have been processed and
// cannot be retried. HTTP/3 says which requests the server did not process
// (H3_REQUEST_REJECTED, GOAWAY, RFC 9114 sections 4.1.1 and 5.2), and the
// engine retries those on another connection, so on h3 backends safe lets
// first requests use any established connection, as aggressive does; so
// does HTTP/2 over TCP, whose GOAWAY and REFUSED_STREAM say the same (RFC
// 9113 sections 6.8 and 8.7). On HTTP/1.1 it keeps HAProxy's rule for a
// first request the engine could not send again (a non-idempotent method,
// or a body too large to replay): such a request never goes to an idle
// connection the server may be closing. An idempotent request with a
// replayable body (RFC 9110 section 9.2.2) may take one, because if that
// connection dies before any response byte the engine sends the request
// again on a fresh connection, as a client would after HAProxy's safe.
// Raw (tunnel) backends cannot replay their bytes and keep HAProxy's rule.
const (
	ReuseNever      = "never"      // a connection serves one client connection only
	ReuseSafe       = "safe"       // h3, h2, h2c: any established connection; http1, http1-tls: idempotent replayable requests any, other first requests a new one; raw: a first stream only on a busy connection
	ReuseAggressive = "aggressive" // any request on any connection that already served a request
	ReuseAlways     = "always"     // any request on any live connection
)

// Backend is a group of servers behind one balancing algorithm.
type Backend struct {
	Name     string   `yaml:"name"`
	Protocol string   `yaml:"protocol"` // h3 (default), raw, h2, h2c, http1, http1-tls
	Servers  []Server `yaml:"servers"`
	Balance  string   `yaml:"balance"`
	// HashKey is what "hash" balancing hashes: "source" (client address,
	// default), "uri" or "header:<Name>".
	HashKey  string      `yaml:"hash_key"`
	Reuse    ReuseConfig `yaml:"reuse"`
	TLS      ClientTLS   `yaml:"tls"`
	Retries  *int        `yaml:"retries"` // default 2
	Redisp   *bool       `yaml:"redispatch"`
	Health   HealthCheck `yaml:"health_check"`
	Timeouts BackTimeout `yaml:"timeouts"`
	// EarlyData lets the engine send GET and HEAD requests without a body
	// in 0-RTT data (RFC 9001 section 4.6, RFC 9114 section 10.9) on a
	// connection that resumes a session and has not completed its
	// handshake yet, instead of waiting a round trip for it (HAProxy's
	// allow-0rtt). Default false: early data can be replayed by an
	// attacker who captured it (RFC 8446 section 8), so only turn it on
	// for servers where a repeated GET or HEAD does no harm. Such
	// requests carry Early-Data: 1 (RFC 8470 section 5.1); a 425 Too
	// Early answer is retried once the handshake completed, and a server
	// that rejects the early data gets the request again on another
	// connection. protocol h3 only. Session tickets are kept per server
	// and resumed whether or not this is on.
	EarlyData bool `yaml:"early_data"`
	// SendProxyProtocol "v2" makes each tunnel to this (raw) backend
	// start with a PROXY protocol v2 header carrying the client's address
	// (the one a trusted proxy_protocol header gave, else the
	// connection's) and the frontend address it reached, as HAProxy's
	// send-proxy-v2. Default "" (none).
	SendProxyProtocol string `yaml:"send_proxy_protocol"`
}

// Server is one origin.
type Server struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"` // ip:port of its QUIC listener, or TCP one for h2, h2c, http1, http1-tls
	// Weight is the server's share of new requests and tunnels, 0..256;
	// default 1. 0 drains the server, as in HAProxy: it takes no new
	// work, keeps what it has, stays known and health-checked; a backend
	// whose servers all have weight 0 answers 503 (no usable server).
	Weight *int `yaml:"weight"`

	addr netip.AddrPort
}

// Addr is the validated address (set by [Config.Validate]).
func (s *Server) Addr() netip.AddrPort { return s.addr }

// ReuseConfig is the reuse policy and its limits, per worker.
type ReuseConfig struct {
	Policy string `yaml:"policy"` // default "safe"
	// MaxIdle is the number of idle connections a worker keeps per server:
	// default 4, or 64 on HTTP/1.1 backends (http1, http1-tls), whose
	// connections carry one request at a time. The pool's purge closes
	// idle ones beyond the recent need.
	MaxIdle int `yaml:"max_idle"`
	// MaxConns bounds connections per server per worker (0: unlimited).
	MaxConns int `yaml:"max_conns"`
	// MaxDials bounds the handshakes in flight per server and worker
	// (default 2): a request that finds no free stream waits for a dial in
	// flight or for returning credit (timeouts.queue) rather than start
	// another one. See package reuse.
	MaxDials int `yaml:"max_dials"`
	// MaxStreams bounds concurrent streams per connection; default 100
	// (keep it at or below the servers' stream limit).
	MaxStreams int `yaml:"max_streams"`
}

// ClientTLS is how the engine verifies its backends.
type ClientTLS struct {
	ServerName string `yaml:"server_name"`
	CA         string `yaml:"ca"` // PEM file; empty: system roots
	// InsecureSkipVerify disables verification (lab use only; logged).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// HealthCheck is an active check per server.
type HealthCheck struct {
	Enabled  *bool    `yaml:"enabled"`  // default true
	Interval Duration `yaml:"interval"` // default 2s
	Timeout  Duration `yaml:"timeout"`  // default 1s
	Path     string   `yaml:"path"`     // HTTP backends: GET path, default /healthz; raw: a QUIC handshake
	Rise     int      `yaml:"rise"`     // successes to mark up, default 2
	Fall     int      `yaml:"fall"`     // failures to mark down, default 3
}

// BackTimeout bounds backend-side waits.
type BackTimeout struct {
	Connect Duration `yaml:"connect"` // QUIC, or TCP and TLS (and HTTP/2 preface) handshake, default 2s
	Idle    Duration `yaml:"idle"`    // idle pooled connection, default 30s
	// Request bounds the wait for response headers, default 30s. While the
	// request body is being sent it counts from the last bytes sent: an
	// upload that moves is never cut (the frontend's timeouts.body bounds
	// a client that stalls it), one the server stops taking is.
	Request Duration `yaml:"request"`
	// Probe is how long a request waits for response headers before the
	// engine PINGs its connection; one that does not answer is closed and
	// its requests retried (see backend.Backend.Suspect). Default 1s, or half
	// of request if that is less; it must stay below request.
	Probe Duration `yaml:"probe"`
	// Queue bounds the wait of a request for a free stream or a dial slot
	// (HAProxy's timeout queue); then 503. Default 2s.
	Queue Duration `yaml:"queue"`
	// BackoffMin and BackoffMax bound the wait before a server is dialled
	// again after failed dials: it doubles per failure from BackoffMin up
	// to BackoffMax, with jitter (half to all of it), and a success resets
	// it. Defaults 50ms and 500ms, so a server is dialled again within a
	// second of coming back.
	BackoffMin Duration `yaml:"backoff_min"`
	BackoffMax Duration `yaml:"backoff_max"`
}

// Duration is a time.Duration read from a Go duration string.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 250ms, 30s)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// FieldError names the offending field (a path such as
// "backends[0].servers[1].address") and the problem.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Errors is every problem found in one configuration.
type Errors []*FieldError

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML (unknown fields are errors), applies defaults and
// validates. The error lists every problem, each naming its field.
func Parse(b []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrInvalid)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalid)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err == nil {
		if errs := fractions(&doc, ""); len(errs) > 0 {
			return nil, errs
		}
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// floatKeys are the keys whose values are not integers (AccessLog.Sample).
var floatKeys = map[string]bool{"sample": true}

// fractions finds numbers with a fraction given to integer keys, which the
// YAML decoder would truncate without a word: "weight: 0.5" would drain
// the server (weight 0), "max_connections: 1.5" would allow one. Every
// such number is a FieldError naming its key path (from path, the path of
// n).
func fractions(n *yaml.Node, path string) Errors {
	var errs Errors
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			errs = append(errs, fractions(c, path)...)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			errs = append(errs, fractions(c, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if v.Kind == yaml.ScalarNode && v.Tag == "!!float" && !floatKeys[k.Value] {
				if f, err := strconv.ParseFloat(v.Value, 64); err == nil && f != math.Trunc(f) {
					errs = append(errs, &FieldError{Field: p, Problem: fmt.Sprintf("line %d: %s is not a whole number", v.Line, v.Value)})
				}
				continue
			}
			errs = append(errs, fractions(v, p)...)
		}
	}
	return errs
}

func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defDur := func(p *Duration, v time.Duration) {
		if *p == 0 {
			*p = Duration(v)
		}
	}
	def(&c.Dataplane, "xdp")
	c.AccessLog.setDefaults()
	def(&c.Admin, "127.0.0.1:9900")
	defInt(&c.MaxConnections, 100000)
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "text")
	defInt(&c.Buffers.Frames, 8192)
	defInt(&c.Buffers.FrameSize, 2048)
	defInt(&c.Buffers.Cache, 256)
	defInt(&c.Buffers.Reserve, c.Buffers.Frames/8)
	defDur(&c.Buffers.Wait, 5*time.Second)
	defDur(&c.Buffers.AcceptWait, time.Second)
	c.Buffers.TCPReceive.setDefaults()
	c.Buffers.TCPSend.setDefaults()
	c.Buffers.setQUICDefaults()
	for i := range c.Interfaces {
		it := &c.Interfaces[i]
		def(&it.XDPMode, "auto")
		def(&it.ZeroCopy, "auto")
		def(&it.NTuple, "auto")
	}
	for i := range c.Frontends {
		f := &c.Frontends[i]
		defDur(&f.Timeouts.Header, 10*time.Second)
		defDur(&f.Timeouts.Idle, 60*time.Second)
		defDur(&f.Timeouts.Body, 30*time.Second)
		defDur(&f.Timeouts.Send, 60*time.Second)
		defInt(&f.MaxHeaderBytes, 64<<10)
		defInt(&f.MaxFrameSize, 16<<10)
		f.ProxyProtocol.setDefaults()
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		def(&b.Protocol, BackendH3)
		def(&b.Balance, BalanceRoundRobin)
		if b.Balance == BalanceHash {
			def(&b.HashKey, "source")
		}
		def(&b.Reuse.Policy, ReuseSafe)
		if b.Protocol == BackendHTTP1 || b.Protocol == BackendHTTP1TLS {
			// One request per connection: a worker needs as many idle
			// connections as it has requests in flight, or each request
			// beyond max_idle closes its connection and the next dials.
			defInt(&b.Reuse.MaxIdle, 64)
		}
		defInt(&b.Reuse.MaxIdle, 4)
		defInt(&b.Reuse.MaxStreams, 100)
		defInt(&b.Reuse.MaxDials, 2)
		if b.Retries == nil {
			b.Retries = new(2)
		}
		if b.Redisp == nil {
			b.Redisp = new(true)
		}
		if b.Health.Enabled == nil {
			b.Health.Enabled = new(true)
		}
		defDur(&b.Health.Interval, 2*time.Second)
		defDur(&b.Health.Timeout, time.Second)
		def(&b.Health.Path, "/healthz")
		defInt(&b.Health.Rise, 2)
		defInt(&b.Health.Fall, 3)
		defDur(&b.Timeouts.Connect, 2*time.Second)
		defDur(&b.Timeouts.Idle, 30*time.Second)
		defDur(&b.Timeouts.Request, 30*time.Second)
		defDur(&b.Timeouts.Queue, 2*time.Second)
		probe := time.Second
		if r := b.Timeouts.Request.D(); r > 0 {
			probe = min(probe, r/2)
		}
		defDur(&b.Timeouts.Probe, probe)
		defDur(&b.Timeouts.BackoffMin, 50*time.Millisecond)
		defDur(&b.Timeouts.BackoffMax, 500*time.Millisecond)
		for j := range b.Servers {
			if b.Servers[j].Weight == nil {
				b.Servers[j].Weight = new(1)
			}
		}
	}
}

// Validate checks c (after defaults) and resolves its addresses. It returns
// Errors naming every bad field, or nil.
func (c *Config) Validate() error {
	var errs Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	oneOf := func(field, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(field, "%q is not one of %s", v, strings.Join(allowed, ", "))
		}
	}
	oneOf("dataplane", c.Dataplane, "xdp", "kernel")
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")
	if c.Workers < 0 {
		bad("workers", "must not be negative")
	}
	if c.MaxConnections < 1 {
		bad("max_connections", "%d must be at least 1", c.MaxConnections)
	}
	c.AccessLog.validate(bad)
	c.GC.validate(bad)

	// Interfaces and the addresses the engine owns.
	queues := 0
	owned := map[netip.Addr]bool{}
	seenIf := map[string]bool{}
	for i := range c.Interfaces {
		it := &c.Interfaces[i]
		p := fmt.Sprintf("interfaces[%d]", i)
		if it.Name == "" {
			bad(p+".name", "missing")
		} else if seenIf[it.Name] {
			bad(p+".name", "interface %q listed twice", it.Name)
		}
		seenIf[it.Name] = true
		if len(it.Queues) == 0 && c.Dataplane == "xdp" {
			bad(p+".queues", "at least one dedicated queue is needed")
		}
		seenQ := map[int]bool{}
		for j, q := range it.Queues {
			if q < 0 {
				bad(fmt.Sprintf("%s.queues[%d]", p, j), "queue id %d is negative", q)
			} else if seenQ[q] {
				bad(fmt.Sprintf("%s.queues[%d]", p, j), "queue %d listed twice", q)
			}
			seenQ[q] = true
		}
		queues += len(it.Queues)
		oneOf(p+".xdp_mode", it.XDPMode, "native", "generic", "auto")
		oneOf(p+".zero_copy", it.ZeroCopy, "on", "off", "auto")
		oneOf(p+".ntuple", it.NTuple, "on", "off", "auto")
		if it.BusyPoll < 0 || it.BusyPoll.D() > 10*time.Millisecond {
			bad(p+".busy_poll", "%v is outside 0..10ms", it.BusyPoll.D())
		}
		if len(it.Addresses) == 0 {
			bad(p+".addresses", "at least one address with prefix length is needed")
		}
		it.addrs = it.addrs[:0]
		for j, a := range it.Addresses {
			pf, err := netip.ParsePrefix(a)
			if err != nil {
				bad(fmt.Sprintf("%s.addresses[%d]", p, j), "%q is not an address with prefix length (e.g. 198.18.1.1/24)", a)
				continue
			}
			if owned[pf.Addr()] {
				bad(fmt.Sprintf("%s.addresses[%d]", p, j), "address %s is already owned", pf.Addr())
			}
			owned[pf.Addr()] = true
			it.addrs = append(it.addrs, pf)
		}
		if it.Gateway != "" {
			gw, err := netip.ParseAddr(it.Gateway)
			if err != nil {
				bad(p+".gateway", "%q is not an IP address", it.Gateway)
			} else if !slices.ContainsFunc(it.addrs, func(pf netip.Prefix) bool { return pf.Contains(gw) }) {
				bad(p+".gateway", "%s is on none of the interface's subnets", gw)
			}
			it.gw = gw
		}
	}
	if c.Dataplane == "xdp" {
		if len(c.Interfaces) == 0 {
			bad("interfaces", "the xdp data plane needs at least one interface")
		}
		if c.Workers != 0 && c.Workers != queues {
			bad("workers", "%d workers but %d dedicated queues: on the xdp data plane there is one worker per queue", c.Workers, queues)
		}
	}

	// Buffers.
	if f := c.Buffers.Frames; f <= 0 || f&(f-1) != 0 {
		bad("buffers.frames", "%d is not a positive power of two", f)
	} else if err := (nic.Config{Frames: f, RXReserve: c.Buffers.Reserve, CacheSize: c.Buffers.Cache}).CheckBuffers(); err != nil {
		// Reception holds up to the fill ring's worth of each port's
		// frames (nic.Config.FillFrames); the rest must leave enough to
		// transmit. nic does the arithmetic, as Open will.
		bad("buffers.frames", "%d: %v", f, err)
	}
	if fs := c.Buffers.FrameSize; fs != 2048 && fs != 4096 {
		bad("buffers.frame_size", "%d: AF_XDP frames are 2048 or 4096 bytes", fs)
	}
	if c.Buffers.Cache <= 0 || c.Buffers.Cache > c.Buffers.Frames/2 {
		bad("buffers.cache", "%d must be between 1 and half of buffers.frames", c.Buffers.Cache)
	}
	if c.Buffers.Reserve < 0 || c.Buffers.Reserve >= c.Buffers.Frames {
		bad("buffers.reserve", "%d must be at least 0 and below buffers.frames", c.Buffers.Reserve)
	}
	c.validateBudget(bad)

	// Admin: a kernel socket on loopback or another kernel address, never
	// one of the data plane's.
	if c.Admin != "off" {
		ap, err := netip.ParseAddrPort(c.Admin)
		switch {
		case err != nil:
			bad("admin", "%q is not ip:port (or \"off\")", c.Admin)
		case owned[ap.Addr()]:
			bad("admin", "%s is a data-plane address; the admin endpoint lives on a kernel address such as 127.0.0.1", ap.Addr())
		case !ap.Addr().IsLoopback() && !c.AdminPublic:
			bad("admin", "%s is not a loopback address: the admin endpoint has no authentication; set admin_public: true to expose it", ap.Addr())
		}
	}

	backends := map[string]*Backend{}
	for i := range c.Backends {
		b := &c.Backends[i]
		p := fmt.Sprintf("backends[%d]", i)
		if b.Name == "" {
			bad(p+".name", "missing")
		} else if backends[b.Name] != nil {
			bad(p+".name", "backend %q defined twice", b.Name)
		}
		backends[b.Name] = b
		oneOf(p+".protocol", b.Protocol, BackendH3, BackendRaw, BackendH2, BackendH2C, BackendHTTP1, BackendHTTP1TLS)
		if b.EarlyData && b.Protocol != BackendH3 {
			bad(p+".early_data", "only for protocol h3 (a tunnel's bytes are not safe to replay; 0-RTT over TCP is not implemented)")
		}
		oneOf(p+".balance", b.Balance, BalanceRoundRobin, BalanceLeastConn, BalanceHash)
		if b.Balance == BalanceHash {
			if k := b.HashKey; k != "source" && k != "uri" && !(strings.HasPrefix(k, "header:") && len(k) > len("header:")) {
				bad(p+".hash_key", "%q is not source, uri or header:<Name>", k)
			}
		} else if b.HashKey != "" {
			bad(p+".hash_key", "only used with balance: hash")
		}
		oneOf(p+".reuse.policy", b.Reuse.Policy, ReuseNever, ReuseSafe, ReuseAggressive, ReuseAlways)
		validateSendProxyProtocol(b, p, bad)
		if b.Reuse.MaxIdle < 0 {
			bad(p+".reuse.max_idle", "must not be negative")
		}
		if b.Reuse.MaxConns < 0 {
			bad(p+".reuse.max_conns", "must not be negative")
		}
		if b.Reuse.MaxDials < 1 {
			bad(p+".reuse.max_dials", "must be at least 1")
		}
		if b.Reuse.MaxStreams < 1 {
			bad(p+".reuse.max_streams", "must be at least 1")
		}
		if *b.Retries < 0 || *b.Retries > 10 {
			bad(p+".retries", "%d is outside 0..10", *b.Retries)
		}
		if b.TLS.CA != "" {
			if _, err := os.Stat(b.TLS.CA); err != nil {
				bad(p+".tls.ca", "%v", err)
			}
		}
		hc := b.Health
		if hc.Interval.D() < 10*time.Millisecond {
			bad(p+".health_check.interval", "%v is below 10ms", hc.Interval.D())
		}
		if hc.Timeout.D() <= 0 || hc.Timeout.D() > hc.Interval.D() {
			bad(p+".health_check.timeout", "%v must be positive and at most the interval (%v)", hc.Timeout.D(), hc.Interval.D())
		}
		if !strings.HasPrefix(hc.Path, "/") {
			bad(p+".health_check.path", "%q must start with /", hc.Path)
		}
		if hc.Rise < 1 || hc.Fall < 1 {
			bad(p+".health_check", "rise and fall must be at least 1")
		}
		for _, t := range []struct {
			n string
			d Duration
		}{{"connect", b.Timeouts.Connect}, {"idle", b.Timeouts.Idle}, {"request", b.Timeouts.Request},
			{"queue", b.Timeouts.Queue}, {"probe", b.Timeouts.Probe}, {"backoff_min", b.Timeouts.BackoffMin}, {"backoff_max", b.Timeouts.BackoffMax}} {
			if t.d < 0 {
				bad(p+".timeouts."+t.n, "must not be negative")
			}
		}
		if b.Timeouts.Request > 0 && b.Timeouts.Probe >= b.Timeouts.Request {
			bad(p+".timeouts.probe", "%v must be below timeouts.request (%v)", b.Timeouts.Probe.D(), b.Timeouts.Request.D())
		}
		if b.Timeouts.BackoffMin > b.Timeouts.BackoffMax {
			bad(p+".timeouts.backoff_min", "%v is above backoff_max (%v)", b.Timeouts.BackoffMin.D(), b.Timeouts.BackoffMax.D())
		}
		if len(b.Servers) == 0 {
			bad(p+".servers", "at least one server is needed")
		}
		names := map[string]bool{}
		addrs := map[netip.AddrPort]bool{}
		for j := range b.Servers {
			s := &b.Servers[j]
			sp := fmt.Sprintf("%s.servers[%d]", p, j)
			if s.Name == "" {
				s.Name = s.Address
			}
			if names[s.Name] {
				bad(sp+".name", "server %q listed twice", s.Name)
			}
			names[s.Name] = true
			ap, err := netip.ParseAddrPort(s.Address)
			if err != nil {
				bad(sp+".address", "%q is not ip:port", s.Address)
			} else {
				if ap.Port() == 0 {
					bad(sp+".address", "port 0")
				}
				if addrs[ap] {
					bad(sp+".address", "%s listed twice", ap)
				}
				addrs[ap] = true
				s.addr = ap
			}
			if *s.Weight < 0 || *s.Weight > 256 {
				bad(sp+".weight", "%d is outside 0..256", *s.Weight)
			}
		}
	}

	if len(c.Frontends) == 0 {
		bad("frontends", "at least one frontend is needed")
	}
	listens := map[string]string{}
	names := map[string]bool{}
	for i := range c.Frontends {
		f := &c.Frontends[i]
		p := fmt.Sprintf("frontends[%d]", i)
		if f.Name == "" {
			f.Name = fmt.Sprintf("fe%d", i)
		}
		// The name labels the frontend's metrics and log lines and is
		// what alt_svc names: two would mix their counters.
		if names[f.Name] {
			bad(p+".name", "frontend %q defined twice", f.Name)
		}
		names[f.Name] = true
		oneOf(p+".protocol", f.Protocol, ProtoHTTP, ProtoHTTPS, ProtoH3, ProtoTCP)
		ap, err := netip.ParseAddrPort(f.Listen)
		if err != nil {
			bad(p+".listen", "%q is not ip:port", f.Listen)
		} else {
			if c.Dataplane == "xdp" && !owned[ap.Addr()] {
				bad(p+".listen", "%s is not one of the interfaces' addresses", ap.Addr())
			}
			transport := "tcp"
			if f.Protocol == ProtoH3 {
				transport = "udp"
			}
			key := transport + " " + ap.String()
			if other, dup := listens[key]; dup {
				bad(p+".listen", "%s %s is already used by frontend %q", transport, ap, other)
			}
			listens[key] = f.Name
			f.addr = ap
		}
		b := backends[f.Backend]
		switch {
		case f.Backend == "" && len(f.Routes) > 0 && f.Protocol != ProtoTCP:
			// No default route: what no route matches gets 404.
		case f.Backend == "":
			bad(p+".backend", "missing")
		case b == nil:
			bad(p+".backend", "no backend named %q", f.Backend)
		case f.Protocol == ProtoTCP && b.Protocol != BackendRaw:
			bad(p+".backend", "a tcp frontend needs a backend with protocol raw, %q has %s", b.Name, b.Protocol)
		case f.Protocol != ProtoTCP && !HTTPBackend(b.Protocol):
			bad(p+".backend", "an %s frontend needs an HTTP backend (h3, h2, h2c, http1, http1-tls), %q has %s", f.Protocol, b.Name, b.Protocol)
		}
		validateRoutes(f, p, backends, bad)
		validateProxyProtocol(f, p, bad)
		validateTLS(f, p, bad)
		if f.Timeouts.Header < 0 || f.Timeouts.Idle < 0 {
			bad(p+".timeouts", "must not be negative")
		}
		if f.Timeouts.Body < 0 {
			bad(p+".timeouts.body", "must not be negative")
		}
		if f.Timeouts.Send < 0 {
			bad(p+".timeouts.send", "must not be negative")
		}
		if f.MaxConnections < 0 {
			bad(p+".max_connections", "must not be negative")
		}
		if f.MaxHeaderBytes < 1024 {
			bad(p+".max_header_bytes", "%d is below 1024", f.MaxHeaderBytes)
		}
		if f.MaxFrameSize < 16<<10 || f.MaxFrameSize > 1<<24-1 {
			bad(p+".max_frame_size", "%d is outside 16384-16777215 (RFC 9113 section 6.5.2)", f.MaxFrameSize)
		}
	}
	c.validateAltSvc(bad)
	if len(errs) > 0 {
		return errs
	}
	return nil
}
