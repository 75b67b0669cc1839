package reuse

// Stats counts what a worker (or the pool, summed) did. Counters only grow;
// the fields after the first blank line are gauges.
type Stats struct {
	Attaches   uint64 // successful Attach and Retry calls
	HitPrivate uint64 // served by a private connection of the session
	HitAvail   uint64 // served by a connection of the avail tree
	HitSafe    uint64 // served by a connection of the safe tree
	HitIdle    uint64 // served by a connection of the idle tree
	Takeovers  uint64 // served by an idle connection taken from another worker
	Misses     uint64 // served by a connection dialed for the request
	Dials      uint64 // connections opened (requests' and warm-up dials)
	DialErrors uint64
	OpenErrors uint64 // a chosen connection died before its stream was opened (or its AttachConn credit leased)
	// Reinsertions counts full connections put back into avail when the
	// peer granted stream credit (QUIC MAX_STREAMS).
	Reinsertions uint64
	Evictions    uint64 // idle connections closed: purge, idle age, idle limit, max-reuse, drain, session limit
	Released     uint64 // dead connections released
	Retries      uint64
	Collisions   uint64 // buckets created whose hash was already used by other Params
	// Queued counts waits of an Attach for credit or a dial slot (one
	// Attach may wait more than once); QueueTimeouts those that gave up.
	Queued        uint64
	QueueTimeouts uint64
	// Pool-wide only (zero in a worker's Stats):
	StaleDone     uint64 // Lease.Done calls on a lease already done (ignored)
	ProbeFailures uint64 // liveness pings that failed (the connection was closed)

	Conns   int // connections owned, including dials in progress
	Idle    int
	Safe    int
	Avail   int
	Private int
	Leases  int // leases handed out (streams or AttachConn credit), not yet Done
}

// ReuseRatio is the fraction of requests that did not wait for a new
// connection: (Attaches - Misses) / Attaches. 0 with no request.
func (s Stats) ReuseRatio() float64 {
	if s.Attaches == 0 {
		return 0
	}
	return float64(s.Attaches-s.Misses) / float64(s.Attaches)
}

// RequestsPerConn is the number of requests per connection opened.
func (s Stats) RequestsPerConn() float64 {
	if s.Dials == 0 {
		return 0
	}
	return float64(s.Attaches) / float64(s.Dials)
}

// Add adds o's counters and gauges to s (the pool-wide StaleDone and
// ProbeFailures too, for sums over pools).
func (s *Stats) Add(o Stats) {
	s.Attaches += o.Attaches
	s.HitPrivate += o.HitPrivate
	s.HitAvail += o.HitAvail
	s.HitSafe += o.HitSafe
	s.HitIdle += o.HitIdle
	s.Takeovers += o.Takeovers
	s.Misses += o.Misses
	s.Dials += o.Dials
	s.DialErrors += o.DialErrors
	s.OpenErrors += o.OpenErrors
	s.Reinsertions += o.Reinsertions
	s.Evictions += o.Evictions
	s.Released += o.Released
	s.Retries += o.Retries
	s.Collisions += o.Collisions
	s.StaleDone += o.StaleDone
	s.ProbeFailures += o.ProbeFailures
	s.Queued += o.Queued
	s.QueueTimeouts += o.QueueTimeouts
	s.Conns += o.Conns
	s.Idle += o.Idle
	s.Safe += o.Safe
	s.Avail += o.Avail
	s.Private += o.Private
	s.Leases += o.Leases
}
