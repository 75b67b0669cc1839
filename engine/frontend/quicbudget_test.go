package frontend

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/engine/backend"
	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/stats"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// TestQUICConnContextBudget runs the h3 frontend's admission
// (quicConnContext, as quic-go calls it for a new connection's Initial
// packets) on a pool with room for two QUIC connections: a third waits
// buffers.accept_wait, is refused (ErrQUICBudget, counted once per client
// address with reason budget) and leaves its connection slot; the next
// one is refused at once; a connection's end (quic-go ending its context)
// releases its reservation and slot exactly once; a wait ends when the
// frontend shuts down; and everything is given back.
func TestQUICConnContextBudget(t *testing.T) {
	const conn = 32 << 10
	p, err := bufring.NewBytePool(bufring.ByteConfig{Sizes: []int{conn}, Limit: 2 * conn})
	if err != nil {
		t.Fatal(err)
	}
	fe := &Frontend{cfg: config.Frontend{Name: "h3"}, env: &Env{Log: slog.New(slog.DiscardHandler), Counters: &stats.Counters{},
		QUIC: QUICBudget{Pool: p, Conn: conn, Wait: 20 * time.Millisecond}}}
	var stop context.CancelFunc
	fe.quicStop, stop = context.WithCancel(context.Background())
	b := &fe.env.QUIC
	refused := fe.env.Counters.Refused.WithLabelValues("h3", RefusedBudget)
	client := func(port int) *quic.ClientInfo {
		return &quic.ClientInfo{RemoteAddr: &net.UDPAddr{IP: net.IPv4(198, 18, 1, 2), Port: port}}
	}
	// open admits a connection as quic-go does; its cancel ends it.
	open := func(port int) (context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(context.Background())
		if _, err := fe.quicConnContext(ctx, client(port)); err != nil {
			cancel()
			return nil, err
		}
		return cancel, nil
	}
	end1, err := open(1000)
	if err != nil {
		t.Fatal(err)
	}
	end2, err := open(1001)
	if err != nil {
		t.Fatal(err)
	}
	if b.Held() != 2*conn || fe.env.Conns.n.Load() != 2 {
		t.Fatalf("held %d, %d connections", b.Held(), fe.env.Conns.n.Load())
	}
	if _, err := open(1002); !errors.Is(err, ErrQUICBudget) || !errors.Is(err, backend.ErrBudget) {
		t.Fatalf("a third connection beyond the budget: %v", err)
	}
	if s := p.Stats(); s.ReserveWaits != 1 || refused.Load() != 1 || fe.env.Conns.n.Load() != 2 || fe.conns.n.Load() != 2 {
		t.Fatalf("the refusal did not wait, was not counted, or kept its slot: refused %d, %d connections, %+v",
			refused.Load(), fe.env.Conns.n.Load(), s)
	}
	// The same attempt's next Initial packet: refused at once, not counted
	// again; another client's: refused at once, counted.
	if _, err := open(1002); err == nil || refused.Load() != 1 {
		t.Fatalf("the same attempt again: %v, refused %d", err, refused.Load())
	}
	if _, err := open(1003); err == nil || refused.Load() != 2 || p.Stats().ReserveWaits != 1 {
		t.Fatalf("another client on the spent budget: %v, refused %d, %+v", err, refused.Load(), p.Stats())
	}
	end1()
	end1() // quic-go ends a context once; a second cancel is a no-op
	testutil.WaitFor(t, "the ended connection's reservation back", func() bool {
		return b.Held() == conn && fe.env.Conns.n.Load() == 1
	})
	end3, err := open(1004)
	if err != nil {
		t.Fatalf("refused after a release: %v", err)
	}
	// A wait ends at shutdown.
	b.Wait = time.Minute
	waited := make(chan error)
	go func() {
		_, err := open(1005)
		waited <- err
	}()
	testutil.WaitFor(t, "a connection waiting", func() bool { return p.Stats().ReserveWaiting == 1 })
	stop()
	if err := <-waited; !errors.Is(err, ErrQUICBudget) {
		t.Fatalf("the wait at shutdown: %v", err)
	}
	end2()
	end3()
	testutil.WaitFor(t, "every reservation back", func() bool {
		s := p.Stats()
		return b.Held() == 0 && s.Reserved == 0 && s.ReserveWaiting == 0 && fe.env.Conns.n.Load() == 0 && fe.conns.n.Load() == 0
	})
}

// TestQUICReserveDial checks a backend QUIC dial's reservation: it waits
// until its context ends (ErrQUICBudget, which is a backend.ErrBudget), is
// woken by a release, and gives its room back once; without a bound it is
// only counted.
func TestQUICReserveDial(t *testing.T) {
	const conn = 64 << 10
	p, err := bufring.NewBytePool(bufring.ByteConfig{Sizes: []int{32 << 10}, Limit: 3 * conn, ReserveLimit: conn})
	if err != nil {
		t.Fatal(err)
	}
	b := &QUICBudget{Pool: p, Conn: conn}
	release, err := b.ReserveDial(context.Background())
	if err != nil || b.Backend() != conn {
		t.Fatalf("first dial: %v, %d reserved", err, b.Backend())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.ReserveDial(ctx); !errors.Is(err, ErrQUICBudget) || !errors.Is(err, backend.ErrBudget) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial beyond the budget: %v", err)
	}
	got := make(chan error)
	go func() {
		r, err := b.ReserveDial(context.Background())
		if err == nil {
			r()
		}
		got <- err
	}()
	testutil.WaitFor(t, "a dial waiting", func() bool { return p.Stats().ReserveWaiting == 1 })
	release()
	release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); b.Backend() != 0 || s.Reserved != 0 {
		t.Errorf("not all given back: %d, %+v", b.Backend(), s)
	}
	u := &QUICBudget{Conn: conn}
	r, err := u.ReserveDial(context.Background())
	if err != nil || u.Backend() != conn {
		t.Fatalf("unbounded: %v, %d", err, u.Backend())
	}
	r()
	if u.Backend() != 0 {
		t.Errorf("unbounded: %d after the release", u.Backend())
	}
}
