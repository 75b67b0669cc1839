package reuse

import (
	"fmt"

	"github.com/xdpnet/xdpnet/mux"
)

// SetHash replaces the connection hash of p, to force collisions in tests.
func SetHash(p *Pool, f func(*Params) uint64) { p.hash = f }

// LockForTest holds w's mutex until the returned func is called, to play a
// worker busy during another worker's takeover.
func LockForTest(w *Worker) (unlock func()) {
	w.mu.Lock()
	return w.mu.Unlock
}

// Owned returns the connections w owns, with the tree each is in ("avail",
// "safe", "idle", "" for none) and whether it is private.
func Owned(w *Worker) map[mux.Conn]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drainInboxLocked()
	m := make(map[mux.Conn]string)
	for _, ws := range w.servers {
		for p := ws.all.head; p != nil; p = ws.all.next(p) {
			m[p.c] = treeName(p)
		}
	}
	return m
}

func treeName(p *pconn) string {
	if p.private != nil {
		return "private"
	}
	return [...]string{inNone: "", inAvail: "avail", inSafe: "safe", inIdle: "idle"}[p.tree]
}

// Check verifies w's internal invariants: lists agree with each
// connection's recorded tree, counters agree with lists, limits hold, and no
// released or foreign connection is linked anywhere.
func Check(w *Worker) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	cfg := &w.pool.cfg
	seen := map[*pconn]bool{}
	for srv, ws := range w.servers {
		if ws.srv != srv {
			return fmt.Errorf("server map mismatch")
		}
		n, used, dialing := 0, 0, ws.dialing
		for p := ws.all.head; p != nil; p = ws.all.next(p) {
			n++
			seen[p] = true
			switch {
			case p.released:
				return fmt.Errorf("released conn still linked")
			case p.owner.Load() != w:
				return fmt.Errorf("conn owned by worker %d linked in worker %d", p.owner.Load().id, w.id)
			case p.b == nil || p.b.ws != ws:
				return fmt.Errorf("conn bucket mismatch")
			case p.leases < 0:
				return fmt.Errorf("negative leases")
			case p.credits < 0 || p.credits > p.leases:
				return fmt.Errorf("%d credit leases of %d leases", p.credits, p.leases)
			case cfg.MaxStreams > 0 && p.leases > cfg.MaxStreams:
				return fmt.Errorf("%d leases above MaxStreams %d", p.leases, cfg.MaxStreams)
			case p.private != nil && p.tree != inNone:
				return fmt.Errorf("private conn in tree %d", p.tree)
			case p.leases > 0 && (p.tree == inIdle || p.tree == inSafe):
				return fmt.Errorf("leased conn in idle/safe")
			case p.leases == 0 && p.tree == inAvail:
				return fmt.Errorf("unleased conn in avail")
			case p.tree == inAvail && cfg.MaxReuse > 0 && p.reuses >= cfg.MaxReuse:
				return fmt.Errorf("exhausted conn in avail")
			case p.tree == inSafe && !p.proven:
				return fmt.Errorf("unproven conn in safe")
			}
			if p.leases > 0 {
				used++
			}
		}
		if n+dialing != ws.conns {
			return fmt.Errorf("server %s: %d conns + %d dialing, counter %d", srv.name, n, dialing, ws.conns)
		}
		if used != ws.used {
			return fmt.Errorf("server %s: %d used, counter %d", srv.name, used, ws.used)
		}
		if ws.lru.n > cfg.MaxIdlePerServer {
			return fmt.Errorf("server %s: %d idle above limit %d", srv.name, ws.lru.n, cfg.MaxIdlePerServer)
		}
		if cfg.MaxConnsPerServer > 0 && ws.conns > cfg.MaxConnsPerServer {
			return fmt.Errorf("server %s: %d conns above limit %d", srv.name, ws.conns, cfg.MaxConnsPerServer)
		}
		lru := 0
		for p := ws.lru.head; p != nil; p = ws.lru.next(p) {
			lru++
			if p.tree != inIdle && p.tree != inSafe {
				return fmt.Errorf("lru holds conn in tree %d", p.tree)
			}
			if !seen[p] {
				return fmt.Errorf("lru holds unowned conn")
			}
			if q := ws.lru.next(p); q != nil && q.idleSince > p.idleSince {
				return fmt.Errorf("lru out of order")
			}
		}
		if lru != ws.lru.n {
			return fmt.Errorf("lru count %d, counter %d", lru, ws.lru.n)
		}
	}
	for _, head := range w.buckets {
		for b := head; b != nil; b = b.next {
			for _, l := range []struct {
				l *plist
				t tree
			}{{&b.avail, inAvail}, {&b.safe, inSafe}, {&b.idle, inIdle}} {
				k := 0
				for p := l.l.head; p != nil; p = l.l.next(p) {
					k++
					if p.tree != l.t || p.b != b || !seen[p] {
						return fmt.Errorf("tree list holds a conn of another tree/bucket/worker")
					}
				}
				if k != l.l.n {
					return fmt.Errorf("tree count %d, counter %d", k, l.l.n)
				}
			}
		}
	}
	return nil
}

// SessionConns returns the private connections of s.
func SessionConns(s *Session) []mux.Conn {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	var cs []mux.Conn
	for p := s.conns.head; p != nil; p = s.conns.next(p) {
		cs = append(cs, p.c)
	}
	return cs
}
