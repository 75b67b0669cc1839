package hwtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/config"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/nic"
	"github.com/xdpnet/xdpnet/nic/ntuple"
)

// target is the interface under test: a NIC from the environment, or the
// engine side of a veth lab's client link.
type target struct {
	real    bool
	ifname  string
	ifindex int
	queues  []int
	addr    netip.Addr // the engine's address (invalid on a NIC without XDPNET_HW_ADDR)
	wait    time.Duration
	lab     *lab.Lab // veth only
}

func newTarget(t *testing.T) *target {
	t.Helper()
	privtest.RequireRoot(t)
	cfg, ok, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		ifi, err := net.InterfaceByName(cfg.Iface)
		if err != nil {
			t.Fatalf("%s=%s: %v", EnvIface, cfg.Iface, err)
		}
		t.Logf("running on NIC %s, queues %v", cfg.Iface, cfg.Queues)
		return &target{real: true, ifname: cfg.Iface, ifindex: ifi.Index, queues: cfg.Queues, addr: cfg.Addr, wait: cfg.Wait}
	}
	l := labtest.New(t, lab.Options{Queues: 2})
	return &target{
		ifname: l.ClientLink.Name, ifindex: l.ClientLink.Index, queues: []int{0, 1},
		addr: l.ClientLink.EngineV4, wait: 5 * time.Second, lab: l,
	}
}

// do runs fn in the target's network namespace.
func (tg *target) do(fn func() error) error {
	if tg.lab != nil {
		return tg.lab.Engine.Do(fn)
	}
	return fn() // the NIC is in the test's own namespace
}

// skipOnVeth ends a check that only a NIC can pass: it skips with msg
// outside CI, and only logs it under CI (where skips fail nothing but
// hide nothing either: the veth half of the check already ran).
func skipOnVeth(t *testing.T, msg string) {
	t.Helper()
	msg += fmt.Sprintf("; run on a NIC with %s and %s (hwtest/README.md)", EnvIface, EnvQueues)
	if privtest.InCI() {
		t.Log(msg)
		return
	}
	t.Skip(msg)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// steer loads and attaches the steering program for the target's queues
// and the engine's address; t's cleanup detaches it.
func (tg *target) steer(t *testing.T, mode bpf.Mode) *bpf.Steering {
	t.Helper()
	s, err := bpf.LoadSteering(bpf.SteeringOptions{Queues: slices.Max(tg.queues) + 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	err = tg.do(func() error { return s.Attach(tg.ifindex, mode) })
	privtest.SkipIfNotSupported(t, err)
	if tg.addr.IsValid() {
		if err := s.AddAddr(tg.addr); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestNativeAttach: the steering program attaches in the driver's path.
func TestNativeAttach(t *testing.T) {
	tg := newTarget(t)
	s := tg.steer(t, bpf.ModeNative)
	if m := s.Mode(); m != bpf.ModeNative {
		t.Fatalf("attached in %v mode, want native", m)
	}
}

// TestZeroCopy: AF_XDP sockets bind every engine queue in zero-copy mode
// on a NIC; on veth, forcing zero-copy must fail with ErrNotSupported (and
// leave the queue free for a copy-mode socket).
func TestZeroCopy(t *testing.T) {
	tg := newTarget(t)
	s := tg.steer(t, bpf.ModeAuto)
	for _, q := range tg.queues {
		var p *nic.Port
		err := tg.do(func() (err error) {
			p, err = nic.Open(nic.Config{Ifindex: tg.ifindex, Queue: q, Map: s, ZeroCopy: nic.ZeroCopyForce, Logger: quiet})
			return err
		})
		if !tg.real {
			if !errors.Is(err, bpf.ErrNotSupported) {
				t.Fatalf("queue %d: forced zero-copy on veth: got %v, want an error wrapping ErrNotSupported", q, err)
			}
			err = tg.do(func() (err error) {
				p, err = nic.Open(nic.Config{Ifindex: tg.ifindex, Queue: q, Map: s, ZeroCopy: nic.ZeroCopyOff, Logger: quiet})
				return err
			})
			if err != nil {
				t.Fatalf("queue %d: copy mode after a refused zero-copy bind: %v", q, err)
			}
			p.Close()
			continue
		}
		privtest.SkipIfNotSupported(t, err)
		if !p.ZeroCopy() {
			t.Errorf("queue %d: bound without zero-copy", q)
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}
	if !tg.real {
		skipOnVeth(t, "zero-copy: veth has no AF_XDP zero-copy (checked: forcing it fails cleanly)")
	}
}

// queueCounter receives on one port and counts the frames addressed to
// the engine and any others (which the steering program must not send).
type queueCounter struct {
	port           *nic.Port
	engine, others atomic.Uint64
}

func (c *queueCounter) run(addr netip.Addr, stop <-chan struct{}) error {
	descs := make([]nic.Desc, 64)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		n, err := c.port.Receive(descs)
		if err != nil {
			return err
		}
		if n == 0 {
			if _, err := c.port.Wait(10 * time.Millisecond); err != nil {
				return err
			}
			continue
		}
		for _, d := range descs[:n] {
			if dst, ok := frameDst(c.port.Frame(d)); ok && dst == addr {
				c.engine.Add(1)
			} else {
				c.others.Add(1)
			}
		}
		c.port.Release(descs[:n])
	}
}

// frameDst returns an IPv4 or IPv6 frame's destination address.
func frameDst(f []byte) (netip.Addr, bool) {
	if len(f) < 14 {
		return netip.Addr{}, false
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case unix.ETH_P_IP:
		if len(f) >= 34 {
			return netip.AddrFrom4([4]byte(f[30:34])), true
		}
	case unix.ETH_P_IPV6:
		if len(f) >= 54 {
			return netip.AddrFrom16([16]byte(f[38:54])), true
		}
	}
	return netip.Addr{}, false
}

// openQueues binds a port on every engine queue and counts what arrives;
// the returned function stops the receivers and closes the ports.
func (tg *target) openQueues(t *testing.T, s *bpf.Steering) (map[int]*queueCounter, func()) {
	t.Helper()
	counters := map[int]*queueCounter{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, q := range tg.queues {
		var p *nic.Port
		err := tg.do(func() (err error) {
			p, err = nic.Open(nic.Config{Ifindex: tg.ifindex, Queue: q, Map: s, Logger: quiet})
			return err
		})
		if err != nil {
			close(stop)
			t.Fatalf("queue %d: %v", q, err)
		}
		c := &queueCounter{port: p}
		counters[q] = c
		wg.Go(func() {
			if err := c.run(tg.addr, stop); err != nil {
				t.Errorf("queue %d receiver: %v", q, err)
			}
		})
	}
	var once sync.Once
	closeAll := func() {
		once.Do(func() {
			close(stop)
			for _, c := range counters {
				c.port.Wake()
			}
			wg.Wait()
			for _, c := range counters {
				c.port.Close()
			}
		})
	}
	t.Cleanup(closeAll)
	return counters, closeAll
}

// TestQueues: frames for the engine arrive on the queue they were meant
// for, one socket per queue. On veth the client peer sends a counted burst
// on each TX queue q, which veth delivers to RX queue q. On a NIC, frames
// come from a sender on the wire for XDPNET_HW_WAIT.
func TestQueues(t *testing.T) {
	tg := newTarget(t)
	s := tg.steer(t, bpf.ModeAuto)
	if tg.real && !tg.addr.IsValid() {
		t.Skipf("traffic on a NIC needs %s (the engine's address) and a sender on the wire", EnvAddr)
	}
	counters, stop := tg.openQueues(t, s)
	if tg.real {
		nicTraffic(t, tg, s, counters, stop)
		return
	}
	const burst = 500
	for _, q := range tg.queues {
		before := map[int]uint64{}
		for qq, c := range counters {
			before[qq] = c.engine.Load()
		}
		if err := sendBurst(tg.lab, q, burst); err != nil {
			t.Fatalf("send on peer queue %d: %v", q, err)
		}
		got := waitCount(&counters[q].engine, before[q]+burst, tg.wait)
		if got != before[q]+burst {
			t.Errorf("queue %d received %d of %d frames", q, got-before[q], burst)
		}
		for qq, c := range counters {
			if qq != q && c.engine.Load() != before[qq] {
				t.Errorf("frames sent to queue %d arrived on queue %d", q, qq)
			}
		}
	}
	for q, c := range counters {
		if n := c.others.Load(); n != 0 {
			t.Errorf("queue %d: %d frames not addressed to the engine were steered to it", q, n)
		}
	}
}

// waitCount polls c until it reaches want or d passes (frames in flight).
func waitCount(c *atomic.Uint64, want uint64, d time.Duration) uint64 {
	deadline := time.Now().Add(d)
	for c.Load() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return c.Load()
}

// sendBurst transmits n UDP frames to the engine from the client peer's TX
// queue q, through an AF_XDP socket bound there (copy mode).
func sendBurst(l *lab.Lab, q, n int) error {
	link := l.ClientLink
	frame, err := pktgen.BuildUDP(pktgen.UDPFrame{
		SrcMAC: link.PeerMAC, DstMAC: link.MAC,
		Src:  netip.AddrPortFrom(link.PeerV4()[0], uint16(40000+q)),
		Dst:  netip.AddrPortFrom(link.EngineV4, 9),
		Size: 128,
	})
	if err != nil {
		return err
	}
	return l.Client.Do(func() error {
		p, err := nic.Open(nic.Config{Ifindex: link.PeerIndex, Queue: q, ZeroCopy: nic.ZeroCopyOff, Logger: quiet})
		if err != nil {
			return err
		}
		defer p.Close()
		descs := make([]nic.Desc, 64)
		sent := 0
		deadline := time.Now().Add(5 * time.Second)
		for sent < n {
			if time.Now().After(deadline) {
				return fmt.Errorf("sent %d of %d frames in 5s", sent, n)
			}
			p.Complete()
			k := p.Alloc(descs[:min(len(descs), n-sent)])
			for i := range descs[:k] {
				descs[i].Len = uint32(len(frame))
				copy(p.Frame(descs[i]), frame)
			}
			m, err := p.Transmit(descs[:k])
			if m < k {
				p.Release(descs[m:k])
			}
			if err != nil && !errors.Is(err, nic.ErrRingFull) { // full: reap and retry
				return err
			}
			sent += m
		}
		// Wait for the completions, so Close drops nothing still queued.
		for st, _ := p.Stats(); st.TxCompleted < uint64(n) && time.Now().Before(deadline); st, _ = p.Stats() {
			p.Complete()
			time.Sleep(time.Millisecond)
		}
		return nil
	})
}

// nicTraffic counts frames for the engine's address from a sender on the
// wire for tg.wait, with ntuple rules steering UDP to the first engine
// queue and TCP to the last when the NIC has flow steering.
func nicTraffic(t *testing.T, tg *target, s *bpf.Steering, counters map[int]*queueCounter, stop func()) {
	udpQ, tcpQ := tg.queues[0], tg.queues[len(tg.queues)-1]
	rules, err := ntuple.Install(tg.ifname, []ntuple.Rule{
		{Proto: ntuple.UDP, Dst: tg.addr, Queue: udpQ},
		{Proto: ntuple.TCP, Dst: tg.addr, Queue: tcpQ},
	})
	switch {
	case err == nil:
		t.Cleanup(func() {
			if err := rules.Remove(); err != nil {
				t.Errorf("remove ntuple rules: %v", err)
			}
		})
		t.Logf("ntuple: UDP to %s -> queue %d, TCP -> queue %d (locations %v)", tg.addr, udpQ, tcpQ, rules.Locations())
	case errors.Is(err, bpf.ErrNotSupported):
		t.Logf("ntuple unsupported on %s: counting whatever RSS sends to the engine's queues: %v", tg.ifname, err)
	default:
		t.Fatal(err)
	}
	t.Logf("waiting %v for frames to %s from the wire", tg.wait, tg.addr)
	c0, _ := s.Counters()
	time.Sleep(tg.wait)
	stop()
	c1, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, q := range tg.queues {
		c := counters[q]
		total += c.engine.Load()
		t.Logf("queue %d: %d frames for the engine, %d others", q, c.engine.Load(), c.others.Load())
		if c.others.Load() != 0 {
			t.Errorf("queue %d: frames not addressed to the engine were steered to it", q)
		}
	}
	noSocket := c1.NoSocket - c0.NoSocket
	t.Logf("steering: %d redirected, %d for the engine on queues without a socket (went to the kernel)",
		c1.Redirected-c0.Redirected, noSocket)
	if total == 0 {
		t.Fatalf("no frame for %s arrived in %v: is the sender running? (hwtest/README.md)", tg.addr, tg.wait)
	}
	if rules != nil && noSocket != 0 {
		t.Errorf("%d frames for the engine reached queues the ntuple rules do not name", noSocket)
	}
}

// TestNtupleRules: rules steering the engine's flows to its queues are
// installed, read back and removed. veth has no flow steering: there the
// check is that the error says so (wraps ErrNotSupported).
func TestNtupleRules(t *testing.T) {
	tg := newTarget(t)
	addr := tg.addr
	if !addr.IsValid() {
		addr = netip.MustParseAddr("198.18.1.1") // benchmark range: a rule only, no traffic
	}
	want := []ntuple.Rule{
		{Proto: ntuple.UDP, Dst: addr, DstPort: 443, Queue: tg.queues[0]},
		{Proto: ntuple.TCP, Dst: addr, DstPort: 443, Queue: tg.queues[len(tg.queues)-1]},
		{Proto: ntuple.UDP, Dst: netip.MustParseAddr("2001:2:0:1::1"), Queue: tg.queues[0]},
	}
	err := tg.do(func() error {
		rules, err := ntuple.Install(tg.ifname, want)
		if err != nil {
			return err
		}
		locs := rules.Locations()
		for i, loc := range locs {
			got, err := ntuple.Get(tg.ifname, loc)
			if err != nil {
				return errors.Join(err, rules.Remove())
			}
			if got != want[i] {
				t.Errorf("rule at %d: got %v, want %v", loc, got, want[i])
			}
		}
		if err := rules.Remove(); err != nil {
			return err
		}
		for _, loc := range locs {
			if _, err := ntuple.Get(tg.ifname, loc); !errors.Is(err, unix.ENOENT) {
				t.Errorf("rule %d still readable after Remove: %v", loc, err)
			}
		}
		return nil
	})
	if !tg.real {
		if !errors.Is(err, bpf.ErrNotSupported) {
			t.Fatalf("ntuple on veth: got %v, want an error wrapping ErrNotSupported", err)
		}
		skipOnVeth(t, "ntuple: veth has no flow steering (checked: the error wraps ErrNotSupported)")
		return
	}
	privtest.SkipIfNotSupported(t, err)
}

// TestEngineNtuple: the engine, started on the target's queues with
// `ntuple: on` (native XDP and zero-copy on a NIC), installs a rule per
// address and protocol and removes exactly those on Close. On veth, which
// has no flow steering, the start fails with an error wrapping
// ErrNotSupported.
func TestEngineNtuple(t *testing.T) {
	tg := newTarget(t)
	addr := tg.addr
	if !addr.IsValid() {
		addr = netip.MustParseAddr("198.18.1.1") // benchmark range: rules only, no traffic
	}
	xdpMode, zeroCopy := "auto", "auto"
	if tg.real {
		xdpMode, zeroCopy = "native", "on"
	}
	queues := make([]string, len(tg.queues))
	for i, q := range tg.queues {
		queues[i] = fmt.Sprint(q)
	}
	cfg, err := config.Parse(fmt.Appendf(nil, `
dataplane: xdp
admin: "off"
interfaces:
  - {name: %s, queues: [%s], xdp_mode: %s, zero_copy: %q, ntuple: %q, addresses: [%s]}
frontends: [{name: web, listen: %q, protocol: http, backend: b}]
backends: [{name: b, servers: [{address: "198.18.2.10:4433"}]}]
`, tg.ifname, strings.Join(queues, ", "), xdpMode, zeroCopy, "on", netip.PrefixFrom(addr, addr.BitLen()), netip.AddrPortFrom(addr, 80)))
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		var n int
		err := tg.do(func() (err error) { n, err = ntuple.Count(tg.ifname); return err })
		privtest.SkipIfNotSupported(t, err)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	var before int
	if tg.real {
		before = count()
	}
	x, err := dataplane.New(cfg.DataPlane(), dataplane.Options{Do: tg.do, Log: quiet})
	if !tg.real {
		if err == nil {
			x.Close()
			t.Fatal("ntuple: on started on veth, which has no flow steering")
		}
		if !errors.Is(err, bpf.ErrNotSupported) || !strings.Contains(err.Error(), "ntuple") {
			t.Fatalf("ntuple: on on veth: got %v, want an ntuple error wrapping ErrNotSupported", err)
		}
		skipOnVeth(t, "engine ntuple: veth has no flow steering (checked: the start fails with an error wrapping ErrNotSupported)")
		return
	}
	privtest.SkipIfNotSupported(t, err)
	if err != nil {
		t.Fatal(err)
	}
	var during int
	countErr := tg.do(func() (err error) { during, err = ntuple.Count(tg.ifname); return err })
	if err := x.Close(); err != nil { // before any Fatal: the rules must go
		t.Errorf("close: %v", err)
	}
	if countErr != nil {
		t.Fatal(countErr)
	}
	if after := count(); during != before+2 || after != before {
		t.Errorf("rules on %s: %d before the engine, %d while it runs (want %d: UDP and TCP to %s), %d after Close (want %d)",
			tg.ifname, before, during, before+2, addr, after, before)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(EnvIface, "")
	if _, ok, err := FromEnv(); ok || err != nil {
		t.Errorf("unset: ok %v err %v", ok, err)
	}
	t.Setenv(EnvIface, "eth1")
	t.Setenv(EnvQueues, "")
	if _, _, err := FromEnv(); err == nil {
		t.Error("interface without queues accepted")
	}
	t.Setenv(EnvQueues, "4-5,2")
	t.Setenv(EnvAddr, "198.18.1.1")
	t.Setenv(EnvWait, "3s")
	cfg, ok, err := FromEnv()
	if err != nil || !ok || cfg.Iface != "eth1" || !slices.Equal(cfg.Queues, []int{2, 4, 5}) ||
		cfg.Addr != netip.MustParseAddr("198.18.1.1") || cfg.Wait != 3*time.Second {
		t.Errorf("got %+v %v %v", cfg, ok, err)
	}
	for k, v := range map[string]string{EnvAddr: "not-an-address", EnvWait: "forever"} {
		t.Run(k, func(t *testing.T) {
			t.Setenv(k, v)
			if _, _, err := FromEnv(); err == nil {
				t.Errorf("%s=%s accepted", k, v)
			}
		})
	}
}

func TestParseQueues(t *testing.T) {
	for in, want := range map[string][]int{"0": {0}, "2,3": {2, 3}, "3,2,3": {2, 3}, "0,4-6": {0, 4, 5, 6}, " 1 , 2 ": {1, 2}} {
		got, err := ParseQueues(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseQueues(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "-1", "1-", "0-5000", "1,,2"} {
		if _, err := ParseQueues(bad); err == nil {
			t.Errorf("ParseQueues(%q) accepted", bad)
		}
	}
}
