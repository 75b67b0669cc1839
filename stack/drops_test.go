package stack_test

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

func reasons(ds []stack.Drop) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Dir+"/"+d.Reason)
	}
	return out
}

// TestDropsListEveryReason pins the reasons Stack.Drops and
// QueueStats.Drops report (they are metric labels: a change is a change of
// the metrics), and checks that every drop counter of QueueStats is in
// exactly one of them.
func TestDropsListEveryReason(t *testing.T) {
	s, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []string{
		"rx/ip_malformed", "rx/ip_fragment_malformed", "rx/ip_reassembly_timeout",
		"rx/ip_invalid_source", "rx/ip_invalid_destination", "rx/ip_disabled", "rx/nic_disabled",
		"rx/ip_forwarding", "rx/iptables", "rx/unknown_l3_protocol", "rx/unknown_l4_protocol",
		"rx/l4_malformed", "rx/tcp_checksum", "rx/tcp_invalid", "rx/tcp_no_endpoint",
		"rx/tcp_listen_overflow", "rx/tcp_invalid_syn_cookie", "rx/tcp_other",
		"rx/udp_checksum", "rx/udp_malformed", "rx/udp_no_endpoint", "rx/udp_receive_buffer",
		"rx/icmp_invalid", "rx/icmp_unrecognized", "rx/igmp_invalid",
		"rx/arp_malformed", "rx/arp_unknown_target", "rx/neighbor_confirmation_dropped",
		"tx/qdisc_full", "tx/ip_tx_error", "tx/icmp_rate_limited", "tx/iptables",
	}
	if got := reasons(s.Drops()); !slices.Equal(got, want) {
		t.Errorf("Stack.Drops reasons:\n got %q\nwant %q", got, want)
	}
	for _, d := range s.Drops() {
		if d.Count != 0 {
			t.Errorf("%s/%s: %d drops on a new stack", d.Dir, d.Reason, d.Count)
		}
	}

	// Give every drop field of QueueStats its own power of two: each must
	// come out as one reason, once.
	var qs stack.QueueStats
	v := reflect.ValueOf(&qs).Elem()
	fields := map[uint64]string{}
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if strings.HasPrefix(name, "RXDrop") || strings.HasPrefix(name, "TXDrop") {
			n := uint64(1) << len(fields)
			v.Field(i).SetUint(n)
			fields[n] = name
		}
	}
	wantQ := []string{
		"rx/short", "rx/other_host", "rx/checksum_ipv4", "rx/checksum_tcp", "rx/checksum_udp", "rx/checksum_icmp",
		"tx/no_frame", "tx/ring_full", "tx/link_down", "tx/too_big", "tx/error",
	}
	ds := qs.Drops()
	if got := reasons(ds); !slices.Equal(got, wantQ) {
		t.Errorf("QueueStats.Drops reasons:\n got %q\nwant %q", got, wantQ)
	}
	seen := map[uint64]bool{}
	var rx, tx uint64
	for _, d := range ds {
		if _, ok := fields[d.Count]; !ok || seen[d.Count] {
			t.Errorf("%s/%s counts %d: not one drop field of its own", d.Dir, d.Reason, d.Count)
		}
		seen[d.Count] = true
		if d.Dir == stack.DirRX {
			rx += d.Count
		} else {
			tx += d.Count
		}
	}
	for n, name := range fields {
		if !seen[n] {
			t.Errorf("QueueStats.%s is in no reason", name)
		}
	}
	if rx != qs.RXDrops() || tx != qs.TXDrops() {
		t.Errorf("reasons add up to rx %d tx %d, RXDrops %d TXDrops %d", rx, tx, qs.RXDrops(), qs.TXDrops())
	}
}

// dropCounts maps "dir/reason" to its count: the stack's and queue 0's
// (prefixed "queue:").
func dropCounts(s *stack.Stack, ep *stack.Endpoint) map[string]uint64 {
	m := map[string]uint64{}
	for _, d := range s.Drops() {
		m[d.Dir+"/"+d.Reason] = d.Count
	}
	for _, d := range ep.Stats()[0].Drops() {
		m["queue:"+d.Dir+"/"+d.Reason] = d.Count
	}
	return m
}

// TestMalformedBatchesCounted feeds every batch of stacktest's malformed
// frames to an Endpoint's receive path and checks that its reason moved by
// the batch size exactly and no other did (the slow reassembly timeout is
// left to the lab test), and that the stack still serves a connection after
// all of them.
func TestMalformedBatchesCounted(t *testing.T) {
	in := newInjector(t)
	const open = 9000
	l, err := in.r.A.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, open))
	if err != nil {
		t.Fatal(err)
	}
	batches, err := stacktest.MalformedBatches(stacktest.Targets{
		SrcMAC: stacktest.MACB, DstMAC: stacktest.MACA, Src: stacktest.AddrB4, Dst: stacktest.AddrA4,
		OpenTCP: open, ClosedTCP: 81, ClosedUDP: 9,
	}, 16)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if b.Slow {
			continue
		}
		key := b.Dir + "/" + b.Reason
		if b.Endpoint {
			key = "queue:" + key
		}
		before := dropCounts(in.r.A, in.r.EPA)
		if _, ok := before[key]; !ok {
			t.Fatalf("%s: no reason %s", b.Name, key)
		}
		for _, f := range b.Frames {
			in.inject(f)
		}
		var after map[string]uint64
		testutil.Eventually(func() bool {
			after = dropCounts(in.r.A, in.r.EPA)
			for _, k := range append([]string{key}, b.AlsoMoves...) {
				if after[k]-before[k] < b.Want {
					return false
				}
			}
			return true
		})
		if got := after[key] - before[key]; got != b.Want {
			t.Errorf("%s: %s moved by %d, want %d", b.Name, key, got, b.Want)
		}
		// Nothing else may move but what netstack is known to count
		// twice, and the replies' rate limit (ICMP errors for closed UDP
		// ports, unknown protocols).
		for k, v := range after {
			switch {
			case k == key || k == "tx/icmp_rate_limited":
			case slices.Contains(b.AlsoMoves, k):
				if v-before[k] != b.Want {
					t.Errorf("%s: %s moved by %d, want %d", b.Name, k, v-before[k], b.Want)
				}
			case v != before[k]:
				t.Errorf("%s: %s moved too, by %d", b.Name, k, v-before[k])
			}
		}
	}
	serveHashAndSend(t, l, 1<<16)
	transfer(t, in.r.B, netip.AddrPortFrom(stacktest.AddrA4, open), 1<<16, 1<<16)
}
