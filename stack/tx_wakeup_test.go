package stack

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// holdLink is a link that keeps a reference to every packet written until
// the test releases it, as a queueing discipline or a link that completes
// sends later does. (gVisor's channel endpoint keeps clones instead, which
// release the socket's send buffer at once.)
type holdLink struct {
	*channel.Endpoint
	wrote chan struct{}

	mu sync.Mutex
	// +checklocks:mu
	held []*gstack.PacketBuffer
}

func newHoldLink() *holdLink {
	return &holdLink{Endpoint: channel.New(0, 1500, "\x02\x00\x00\x00\x00\x01"), wrote: make(chan struct{}, 1)}
}

func (l *holdLink) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	l.mu.Lock()
	for _, p := range pkts.AsSlice() {
		l.held = append(l.held, p.IncRef())
	}
	l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return pkts.Len(), nil
}

// take returns the packets held; the caller releases them.
func (l *holdLink) take() []*gstack.PacketBuffer {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.held
	l.held = nil
	return h
}

func (l *holdLink) holding() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}

// holdSocket is a UDP socket on a stack whose only NIC is a holdLink.
func holdSocket(t *testing.T) (*holdLink, net.Conn) {
	t.Helper()
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	link := newHoldLink()
	n, err := s.AddNIC(link, NICOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range link.take() {
			p.DecRef()
		}
	})
	if err := n.AddAddress(netip.MustParsePrefix("198.18.1.1/24")); err != nil {
		t.Fatal(err)
	}
	c, err := s.DialUDP(netip.MustParseAddrPort("198.18.1.1:0"), netip.MustParseAddrPort("198.18.1.2:9"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return link, c
}

// fillSendBuffer writes payload-byte datagrams until a write blocks past
// a short deadline, and returns that write's error.
func fillSendBuffer(t *testing.T, c net.Conn, payload int) error {
	t.Helper()
	buf := make([]byte, payload)
	for {
		if err := c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
}

// TestUDPWriteDeadlineIsErrDeadlineExceeded: a write that waited for send
// buffer room past its deadline fails with os.ErrDeadlineExceeded, as on a
// kernel socket; mux's bounded writes tell a full socket from a broken one
// by it.
func TestUDPWriteDeadlineIsErrDeadlineExceeded(t *testing.T) {
	_, c := holdSocket(t)
	err := fillSendBuffer(t, c, 1200)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write into a full send buffer past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
}

// TestUDPWriteWakesWhenSendBufferDrainsAsync: a UDP socket whose packets are
// released by another goroutine than the writer's (the qdisc's, or a
// link's that completes sends later) must never miss the moment its send
// buffer drains. The link below holds every packet until the writer has
// filled the send buffer, then, a random moment later (around the writer's
// next write, which finds the buffer full and blocks), releases them all. A
// write that stays blocked although nothing is in flight any more is a lost
// wakeup: without a deadline the socket would stay blocked for good with an
// empty send buffer. (gonet.UDPConn.WriteTo registers for the writable
// event only after its first try failed and then waits without trying
// again: with the qdisc's goroutine releasing packets, this failed within
// a few hundred fills in every run.)
func TestUDPWriteWakesWhenSendBufferDrainsAsync(t *testing.T) {
	const payload = 1200
	// stuck is far beyond any scheduling delay on a loaded machine: the
	// releaser empties the link within microseconds of the writer
	// blocking.
	const stuck = 2 * time.Second
	writes := 100000
	if txRace {
		writes = 20000
	}
	link, c := holdSocket(t)
	fillSendBuffer(t, c, payload)
	full := link.holding()
	for _, p := range link.take() {
		p.DecRef()
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	releases := 0
	defer func() {
		cancel()
		wg.Wait()
		t.Logf("send buffer of %d packets filled and released %d times", full, releases)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-ctx.Done():
				return
			case <-link.wrote:
			}
			if link.holding() < full {
				continue
			}
			for range rng.IntN(8) {
				runtime.Gosched()
			}
			for _, p := range link.take() {
				p.DecRef()
			}
			releases++
		}
	}()

	buf := make([]byte, payload)
	for i := range writes {
		if err := c.SetWriteDeadline(time.Now().Add(stuck)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(buf); err != nil {
			t.Fatalf("write %d of %d: %v; the link holds %d packets: the send buffer had drained, the writer was never woken", i, writes, err, link.holding())
		}
	}
}
