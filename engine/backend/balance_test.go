package backend

import (
	"fmt"
	"testing"

	"github.com/xdpnet/xdpnet/engine/config"
)

func servers(weights ...int) []*Server {
	var out []*Server
	for i, w := range weights {
		s := &Server{name: fmt.Sprintf("s%d", i), weight: w}
		s.up.Store(true)
		out = append(out, s)
	}
	return out
}

func all(int) bool { return true }

func TestRoundRobinWeights(t *testing.T) {
	b := newBalancer(config.BalanceRoundRobin, servers(1, 3, 2))
	got := make([]int, 3)
	for range 600 {
		i, ok := b.pick(nil, all)
		if !ok {
			t.Fatal("no pick")
		}
		got[i]++
	}
	if got[0] != 100 || got[1] != 300 || got[2] != 200 {
		t.Errorf("weighted shares %v, want [100 300 200]", got)
	}
}

func TestRoundRobinSkipsUnusable(t *testing.T) {
	b := newBalancer(config.BalanceRoundRobin, servers(1, 1, 1))
	for range 30 {
		i, ok := b.pick(nil, func(i int) bool { return i == 2 })
		if !ok || i != 2 {
			t.Fatalf("picked %d %v, want 2", i, ok)
		}
	}
	if _, ok := b.pick(nil, func(int) bool { return false }); ok {
		t.Error("picked with no usable server")
	}
}

func TestLeastConn(t *testing.T) {
	ss := servers(1, 1, 2)
	b := newBalancer(config.BalanceLeastConn, ss)
	ss[0].inflight.Store(3)
	ss[1].inflight.Store(1)
	ss[2].inflight.Store(3) // 1.5 per weight unit
	for range 10 {
		if i, _ := b.pick(nil, all); i != 1 {
			t.Fatalf("picked %d, want 1", i)
		}
	}
	ss[1].inflight.Store(5)
	if i, _ := b.pick(nil, all); i != 2 {
		t.Fatalf("picked %d, want 2 (weighted)", i)
	}
}

func TestConsistentHash(t *testing.T) {
	ss := servers(1, 1, 1, 1)
	b := newBalancer(config.BalanceHash, ss)
	const keys = 4000
	before := make([]int, keys)
	counts := make([]int, 4)
	for k := range keys {
		i, ok := b.pick(fmt.Appendf(nil, "client-%d", k), all)
		if !ok {
			t.Fatal("no pick")
		}
		before[k] = i
		counts[i]++
	}
	for i, c := range counts {
		if c < keys/4/2 || c > keys/4*2 {
			t.Errorf("server %d got %d of %d keys: unbalanced ring", i, c, keys)
		}
	}
	// Take server 2 out: only its keys move.
	moved := 0
	for k := range keys {
		i, _ := b.pick(fmt.Appendf(nil, "client-%d", k), func(i int) bool { return i != 2 })
		if i == 2 {
			t.Fatal("picked an unusable server")
		}
		if before[k] != 2 && i != before[k] {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d keys of other servers moved when one server went down", moved)
	}
	// Same key, same server, every time (and in a new ring: reloads).
	b2 := newBalancer(config.BalanceHash, servers(1, 1, 1, 1))
	for k := range 100 {
		key := fmt.Appendf(nil, "client-%d", k)
		if i, _ := b2.pick(key, all); i != before[k] {
			t.Fatalf("key %d maps to %d in a rebuilt ring, was %d", k, i, before[k])
		}
	}
}

// A drained server (weight 0) is never picked, by any algorithm; with every
// server drained there is no pick at all.
func TestBalancersSkipDrained(t *testing.T) {
	for _, alg := range []string{config.BalanceRoundRobin, config.BalanceLeastConn, config.BalanceHash} {
		t.Run(alg, func(t *testing.T) {
			b := newBalancer(alg, servers(0, 2, 0, 1))
			got := make([]int, 4)
			for k := range 300 {
				i, ok := b.pick(fmt.Appendf(nil, "key%d", k), all)
				if !ok {
					t.Fatal("no pick")
				}
				got[i]++
			}
			if got[0] != 0 || got[2] != 0 || got[1] == 0 || got[3] == 0 {
				t.Errorf("picks %v: drained servers 0 and 2 picked, or live ones not", got)
			}
			if i, ok := newBalancer(alg, servers(0, 0)).pick([]byte("k"), all); ok {
				t.Errorf("picked %d with every server drained", i)
			}
		})
	}
}
