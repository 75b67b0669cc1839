package stats

// Counters are the engine's live counters: frontends, backends and the
// engine count in them, and [Counters.Snapshot] reads them into an
// [EngineStats].
type Counters struct {
	// Label values of each vec, in order, are in its comment; Snapshot
	// says which snapshot field each one fills.
	Requests        Vec     // frontend, class, result
	RouteRequests   Vec     // frontend, route, class
	ProxyProtocol   Vec     // frontend, result
	ClientConns     Vec     // frontend (a gauge)
	Refused         Vec     // frontend, reason
	ClientTimeouts  Vec     // frontend, reason
	TLSHandshakes   Vec     // frontend, result
	Tunnels         Vec     // frontend, result
	BackendRequests Vec     // backend, server
	ConnsOpened     Vec     // backend, server
	ConnectErrors   Vec     // backend, server
	ServerUp        Vec     // backend, server (a gauge: 1 or 0)
	SocketsReplaced Vec     // backend
	SilentConns     Vec     // backend, server
	Resumed         Vec     // backend, server
	EarlyRequests   Vec     // backend, server, result
	Failures        Vec     // backend, reason
	Retries         Vec     // backend
	Redispatches    Vec     // backend
	WorkerPicks     Vec     // by
	ConnsOpen       Counter // a gauge
	DrainCut        Counter
	// AccessLogDropped counts access log lines dropped (queue full).
	AccessLogDropped Counter
}
