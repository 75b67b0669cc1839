package stack_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sink accepts connections on l and, for each, reads everything, then writes
// back the SHA-256 of what it read followed by n bytes of its own stream
// (seeded by the first 8 bytes it read), then closes.
func serveHashAndSend(t testing.TB, l net.Listener, n int) {
	testutil.Serve(t, l, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			t.Errorf("server read: %v", err)
			return
		}
		if _, err := c.Write(h.Sum(nil)); err != nil {
			t.Errorf("server write: %v", err)
			return
		}
		if _, err := io.Copy(c, io.LimitReader(newStream(7), int64(n))); err != nil {
			t.Errorf("server send: %v", err)
		}
	})
}

// stream is a deterministic pseudo-random byte source.
type stream struct{ r *rand.ChaCha8 }

func newStream(seed byte) *stream {
	var s [32]byte
	s[0] = seed
	return &stream{rand.NewChaCha8(s)}
}

func (s *stream) Read(p []byte) (int, error) { return s.r.Read(p) }

// transfer sends up bytes to the server at addr and reads back the hash and
// down bytes, verifying both.
func transfer(t testing.TB, s *stack.Stack, addr netip.AddrPort, up, down int) {
	t.Helper()
	c, err := s.DialTCP(testCtx(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	verifyTransfer(t, c, up, down, 60*time.Second)
}

// verifyTransfer is transfer's client half over an established connection,
// which it closes; the whole exchange must end within limit.
func verifyTransfer(t testing.TB, c net.Conn, up, down int, limit time.Duration) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(limit))
	want := sha256.New()
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(c, want), io.LimitReader(newStream(3), int64(up)))
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		werr <- err
	}()
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading hash: %v (writer: %v)", err, <-werr)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Sum(nil)) {
		t.Fatal("server saw different bytes than sent")
	}
	hd := sha256.New()
	n, err := io.Copy(hd, c)
	if err != nil {
		t.Fatal(err)
	}
	wd := sha256.New()
	_, _ = io.Copy(wd, io.LimitReader(newStream(7), int64(down)))
	if n != int64(down) || !bytes.Equal(hd.Sum(nil), wd.Sum(nil)) {
		t.Fatalf("received %d bytes, want %d; hash match %v", n, down, bytes.Equal(hd.Sum(nil), wd.Sum(nil)))
	}
}

// checkFramesHome closes both stacks and checks that every UMEM frame is back
// in its pool.
func checkFramesHome(t *testing.T, r *stacktest.XDPResult) {
	t.Helper()
	_ = r.A.Close()
	_ = r.B.Close()
	for _, ep := range []*stack.Endpoint{r.EPA, r.EPB} {
		if err := ep.CloseErr(); err != nil {
			t.Errorf("endpoint close: %v", err)
		}
	}
	for i, w := range r.Wires {
		for _, p := range []*stacktest.MemPort{w.A, w.B} {
			if err := p.Pool().CheckConservation(); err != nil {
				t.Errorf("wire %d: %v", i, err)
			}
			if st := p.Pool().Stats(); st.InUse != 0 {
				t.Errorf("wire %d: %d frames still held after Close", i, st.InUse)
			}
		}
	}
}

func TestXDPTransfer(t *testing.T) {
	size := 16 << 20
	if raceEnabled {
		size = 2 << 20
	}
	for _, tc := range []struct {
		name   string
		addr   netip.Addr
		queues int
		noOff  bool
		txCsum bool // the ports finish GSO segments' checksums
	}{
		{"v4", stacktest.AddrA4, 1, false, false},
		{"v6", stacktest.AddrA6, 1, false, false},
		{"v4-2queues", stacktest.AddrA4, 2, false, false},
		{"v4-no-gro-gso", stacktest.AddrA4, 1, true, false},
		{"v4-tx-checksum", stacktest.AddrA4, 1, false, true},
		{"v6-tx-checksum", stacktest.AddrA6, 1, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := stack.EndpointOptions{DisableGRO: tc.noOff, DisableGSO: tc.noOff}
			mem := stacktest.MemConfig{TxChecksum: tc.txCsum}
			r := stacktest.NewXDPPair(t, stacktest.XDPOptions{Queues: tc.queues, Mem: mem, A: o, B: o})
			l, err := r.A.ListenTCP(netip.AddrPortFrom(tc.addr, 5201))
			if err != nil {
				t.Fatal(err)
			}
			serveHashAndSend(t, l, size)
			// Two connections at once, so two queues both carry traffic
			// (with luck of the hash) and flows interleave.
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					transfer(t, r.B, netip.AddrPortFrom(tc.addr, 5201), size, size)
				}()
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			ta, tb := stack.Total(r.EPA.Stats()), stack.Total(r.EPB.Stats())
			t.Logf("a: %+v", ta)
			t.Logf("b: %+v", tb)
			for i, w := range r.Wires {
				sa, _ := w.A.Stats()
				sb, _ := w.B.Stats()
				t.Logf("wire %d: a %+v b %+v", i, sa.Kernel, sb.Kernel)
			}
			t.Logf("retransmits a %d b %d, timeouts a %d b %d", r.A.Netstack().Stats().TCP.Retransmits.Value(), r.B.Netstack().Stats().TCP.Retransmits.Value(),
				r.A.Netstack().Stats().TCP.Timeouts.Value(), r.B.Netstack().Stats().TCP.Timeouts.Value())
			if tc.noOff {
				if ta.TXGSOPackets != 0 || tb.TXGSOPackets != 0 {
					t.Errorf("GSO disabled but %d/%d GSO packets", ta.TXGSOPackets, tb.TXGSOPackets)
				}
			} else if ta.TXGSOSegments <= ta.TXGSOPackets || tb.TXGSOSegments <= tb.TXGSOPackets {
				t.Errorf("GSO never cut a segment into several frames: a %d->%d, b %d->%d",
					ta.TXGSOPackets, ta.TXGSOSegments, tb.TXGSOPackets, tb.TXGSOSegments)
			}
			if ta.RXDrops()+tb.RXDrops() != 0 {
				t.Errorf("rx drops: a %d b %d", ta.RXDrops(), tb.RXDrops())
			}
			for i, w := range r.Wires {
				if fa, fb := w.A.ChecksumsFinished(), w.B.ChecksumsFinished(); tc.txCsum != (fa > 0 && fb > 0) {
					t.Errorf("wire %d: ports finished %d and %d checksums, offload %v", i, fa, fb, tc.txCsum)
				}
			}
			// GRO: netstack saw fewer packets than frames arrived.
			if !tc.noOff {
				nicRX := r.A.Netstack().NICInfo()[r.NICA.ID()].Stats.Rx.Packets.Value()
				if nicRX >= ta.RXFrames {
					t.Errorf("GRO coalesced nothing: %d frames in, %d packets up", ta.RXFrames, nicRX)
				}
			}
			checkFramesHome(t, r)
		})
	}
}

// TestFlowQueue checks, on a two-queue endpoint, that FlowQueue names the
// queue each accepted connection's packets arrived on, for both families.
func TestFlowQueue(t *testing.T) {
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{Queues: 2})
	for _, addr := range []netip.Addr{stacktest.AddrA4, stacktest.AddrA6} {
		l, err := r.A.ListenTCP(netip.AddrPortFrom(addr, 7))
		if err != nil {
			t.Fatal(err)
		}
		accepted := make(chan net.Conn)
		go func() {
			defer close(accepted)
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		rxFrames := func() (f [2]uint64) {
			for i, q := range r.EPA.Stats() {
				f[i] = q.RXFrames
			}
			return f
		}
		var seen [2]int
		for i := 0; i < 64 && (seen[0] == 0 || seen[1] == 0); i++ {
			before := rxFrames()
			c, err := r.B.DialTCP(testCtx(t), netip.AddrPortFrom(addr, 7))
			if err != nil {
				t.Fatal(err)
			}
			sc := <-accepted
			// Every segment of the client's flow leaves on the client's
			// queue of that flow and arrives on the same queue here; the
			// first connection also carries neighbour resolution.
			after := rxFrames()
			want := -1
			switch {
			case after[0] > before[0] && after[1] == before[1]:
				want = 0
			case after[1] > before[1] && after[0] == before[0]:
				want = 1
			}
			la := sc.LocalAddr().(*net.TCPAddr).AddrPort()
			ra := sc.RemoteAddr().(*net.TCPAddr).AddrPort()
			q, ok := r.EPA.FlowQueue(la, ra)
			switch {
			case !ok:
				t.Errorf("%v -> %v: FlowQueue found nothing", ra, la)
			case want >= 0 && q != want:
				t.Errorf("%v -> %v: FlowQueue = %d, the segments arrived on queue %d", ra, la, q, want)
			case want >= 0:
				seen[q]++
			}
			if _, ok := r.EPA.FlowQueue(ra, la); ok {
				t.Errorf("%v -> %v: the reversed flow was found", ra, la)
			}
			c.Close()
			sc.Close()
		}
		if seen[0] == 0 || seen[1] == 0 {
			t.Errorf("%v: connections per queue %v: want both queues used", addr, seen)
		}
		l.Close()
		for range accepted {
		}
	}
	checkFramesHome(t, r)
}
