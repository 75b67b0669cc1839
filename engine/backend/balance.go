package backend

import (
	"hash/maphash"
	"slices"
	"sync/atomic"

	"github.com/xdpnet/xdpnet/engine/config"
)

// balancer picks a server index among those usable for one request. usable
// reports whether server i may be picked (up and not excluded by a previous
// attempt of this request); key is the hash key (used by hash only).
type balancer interface {
	pick(key []byte, usable func(i int) bool) (int, bool)
}

// newBalancer builds the algorithm named by alg over servers (weights
// already validated). inflight is read by leastconn. A server of weight 0
// is drained: no algorithm picks it, so it takes no new work while its
// health checks go on and a weight change by reload brings it back.
func newBalancer(alg string, servers []*Server) balancer {
	switch alg {
	case config.BalanceLeastConn:
		return &leastConn{servers: servers}
	case config.BalanceHash:
		return newHashRing(servers)
	default:
		return newRoundRobin(servers)
	}
}

// roundRobin is weighted round robin over a schedule in which server i
// appears weight(i) times, interleaved so that equal weights alternate
// (a drained server, weight 0, not at all; with every server drained the
// schedule is empty and pick finds none).
type roundRobin struct {
	sched []int
	next  atomic.Uint64
}

func newRoundRobin(servers []*Server) *roundRobin {
	// Interleave: pass k takes every server whose weight exceeds k.
	var sched []int
	for k := 0; ; k++ {
		added := false
		for i, s := range servers {
			if s.weight > k {
				sched = append(sched, i)
				added = true
			}
		}
		if !added {
			break
		}
	}
	return &roundRobin{sched: sched}
}

func (r *roundRobin) pick(_ []byte, usable func(int) bool) (int, bool) {
	n := uint64(len(r.sched))
	start := r.next.Add(1) - 1
	for k := range n {
		i := r.sched[(start+k)%n]
		if usable(i) {
			return i, true
		}
	}
	return 0, false
}

// leastConn picks the usable server with the fewest in-flight requests
// relative to its weight, skipping drained ones (weight 0); ties go to the
// lowest index after a rotating start so that an idle backend still
// spreads load.
type leastConn struct {
	servers []*Server
	rot     atomic.Uint64
}

func (l *leastConn) pick(_ []byte, usable func(int) bool) (int, bool) {
	best, bestLoad := -1, 0.0
	n := len(l.servers)
	start := int(l.rot.Add(1) % uint64(n))
	for k := range n {
		i := (start + k) % n
		s := l.servers[i]
		if s.weight == 0 || !usable(i) {
			continue
		}
		load := float64(s.inflight.Load()) / float64(s.weight)
		if best < 0 || load < bestLoad {
			best, bestLoad = i, load
		}
	}
	return best, best >= 0
}

// hashRing is consistent hashing: each server owns 100*weight points on a
// ring of 64-bit hashes (a drained server, weight 0, none); a key goes to
// the first usable server clockwise from its hash, so removing a server
// moves only the keys it owned.
type hashRing struct {
	seed   maphash.Seed
	points []ringPoint
}

type ringPoint struct {
	h   uint64
	srv int
}

const pointsPerWeight = 100

func newHashRing(servers []*Server) *hashRing {
	r := &hashRing{seed: ringSeed}
	for i, s := range servers {
		for v := range s.weight * pointsPerWeight {
			// The point depends on the server's name, not its index, so that
			// a reload that reorders servers keeps the mapping.
			var h maphash.Hash
			h.SetSeed(r.seed)
			h.WriteString(s.name)
			h.WriteByte(0)
			var b [8]byte
			for j := range b {
				b[j] = byte(v >> (8 * j))
			}
			h.Write(b[:])
			r.points = append(r.points, ringPoint{h: h.Sum64(), srv: i})
		}
	}
	slices.SortFunc(r.points, func(a, b ringPoint) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return a.srv - b.srv
	})
	return r
}

// ringSeed is fixed per process so that every worker and every reload maps
// a key to the same server.
var ringSeed = maphash.MakeSeed()

func (r *hashRing) pick(key []byte, usable func(int) bool) (int, bool) {
	if len(r.points) == 0 {
		return 0, false
	}
	h := maphash.Bytes(r.seed, key)
	start, _ := slices.BinarySearchFunc(r.points, h, func(p ringPoint, h uint64) int {
		switch {
		case p.h < h:
			return -1
		case p.h > h:
			return 1
		}
		return 0
	})
	var tried map[int]bool // allocated only when the first choice is down
	for k := range len(r.points) {
		p := r.points[(start+k)%len(r.points)]
		if tried[p.srv] {
			continue
		}
		if usable(p.srv) {
			return p.srv, true
		}
		if tried == nil {
			tried = map[int]bool{}
		}
		tried[p.srv] = true
	}
	return 0, false
}
