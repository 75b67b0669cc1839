package dataplane

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/nic/ntuple"
)

func TestNTupleRulesPlan(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("2001:2:0:1::1")
	for _, tc := range []struct {
		name   string
		queues []int
		want   []ntuple.Rule
	}{
		{"one queue", []int{3}, []ntuple.Rule{
			{Proto: ntuple.UDP, Dst: v4, Queue: 3}, {Proto: ntuple.TCP, Dst: v4, Queue: 3},
			{Proto: ntuple.UDP, Dst: v6, Queue: 3}, {Proto: ntuple.TCP, Dst: v6, Queue: 3},
		}},
		{"round robin", []int{4, 2, 7}, []ntuple.Rule{
			{Proto: ntuple.UDP, Dst: v4, Queue: 4}, {Proto: ntuple.TCP, Dst: v4, Queue: 2},
			{Proto: ntuple.UDP, Dst: v6, Queue: 7}, {Proto: ntuple.TCP, Dst: v6, Queue: 4},
		}},
		{"no queues", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := &Interface{Queues: tc.queues, Addresses: []netip.Prefix{netip.PrefixFrom(v4, 24), netip.PrefixFrom(v6, 64)}}
			if got := ntupleRules(it); !slices.Equal(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestNTupleOnVeth starts the xdp data plane on a veth, which has no flow
// steering: "auto" and "off" start, "on" fails naming the interface with an
// error wrapping bpf.ErrNotSupported.
func TestNTupleOnVeth(t *testing.T) {
	privtest.RequireRoot(t)
	l := labtest.New(t, lab.Options{Queues: 2})
	for _, mode := range []NTuple{NTupleAuto, NTupleOff, NTupleOn} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg := Config{
				Interfaces: []Interface{{
					Name: l.ClientLink.Name, Queues: []int{0, 1}, NTuple: mode,
					Addresses: []netip.Prefix{netip.PrefixFrom(l.ClientLink.EngineV4, 24)},
				}},
				Buffers: Buffers{Frames: 8192, FrameSize: 2048, Cache: 256, Reserve: 1024},
			}
			var logs strings.Builder
			x, err := New(cfg, Options{Do: l.Engine.Do, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if mode != NTupleOn {
				privtest.SkipIfNotSupported(t, err)
				if err != nil {
					t.Fatalf("ntuple %s on veth: %v", mode, err)
				}
				want := map[NTuple]int{NTupleAuto: 1, NTupleOff: 0}[mode]
				if n := strings.Count(logs.String(), "level=INFO msg=\"ntuple flow steering unsupported"); n != want {
					t.Errorf("ntuple %s: %d info lines on the missing flow steering, want %d:\n%s", mode, n, want, logs.String())
				}
				if err := x.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
				return
			}
			if err == nil {
				x.Close()
				t.Fatal("ntuple on: started on a veth without flow steering")
			}
			if !errors.Is(err, bpf.ErrNotSupported) || !strings.Contains(err.Error(), l.ClientLink.Name) || !strings.Contains(err.Error(), "ntuple") {
				t.Errorf("ntuple on: want an error naming ntuple and %s and wrapping bpf.ErrNotSupported, got %v", l.ClientLink.Name, err)
			}
			t.Logf("ntuple on: %v", err)
			// The failed start released the interface: auto starts again.
			cfg.Interfaces[0].NTuple = NTupleAuto
			x, err = New(cfg, Options{Do: l.Engine.Do, Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatalf("start after the failed one: %v", err)
			}
			if err := x.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}
