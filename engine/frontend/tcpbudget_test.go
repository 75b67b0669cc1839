package frontend

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// TestTCPBudgetAdmit runs TCPBudget on a pool with room for two
// connections: the third waits for accept_wait and is refused, the next
// one is refused at once (no second wait) until a release leaves room, a
// waiting one is admitted by a release, and everything is given back.
func TestTCPBudgetAdmit(t *testing.T) {
	const conn = 32 << 10
	p, err := bufring.NewBytePool(bufring.ByteConfig{Sizes: []int{conn}, Limit: 2 * conn})
	if err != nil {
		t.Fatal(err)
	}
	b := &TCPBudget{Pool: p, Conn: conn, Wait: 20 * time.Millisecond}
	for i := range 2 {
		if !b.admit() {
			t.Fatalf("connection %d refused", i+1)
		}
	}
	if b.admit() {
		t.Fatal("a third connection was admitted beyond the budget")
	}
	if s := p.Stats(); s.ReserveWaits != 1 || s.ReserveFailures != 1 || !b.spent.Load() {
		t.Fatalf("the third connection did not wait, or its failure was not kept: %+v", s)
	}
	if b.admit() || p.Stats().ReserveWaits != 1 {
		t.Fatal("the fourth connection was admitted, or waited again, while the budget stayed spent")
	}
	b.release(conn)
	if !b.admit() || b.spent.Load() {
		t.Fatal("a connection was refused after a release, or the budget stayed marked spent")
	}
	b.Wait = time.Minute
	admitted := make(chan bool)
	go func() { admitted <- b.admit() }()
	testutil.WaitFor(t, "a connection waiting", func() bool { return p.Stats().ReserveWaiting == 1 })
	b.release(conn)
	if !<-admitted {
		t.Fatal("the waiting connection was refused after a release")
	}
	if b.Held() != 2*conn {
		t.Fatalf("held %d, want %d", b.Held(), 2*conn)
	}
	b.release(conn)
	b.release(conn)
	if s := p.Stats(); b.Held() != 0 || s.Reserved != 0 || s.Live != 0 || s.ReserveWaiting != 0 {
		t.Errorf("not all given back: held %d, %+v", b.Held(), s)
	}
}

// Without a bounded pool (buffers.memory 0) connections are counted, never
// refused; on the kernel stack (Conn 0) not even counted.
func TestTCPBudgetUnbounded(t *testing.T) {
	b := &TCPBudget{Conn: 1 << 20}
	for range 100 {
		if !b.admit() {
			t.Fatal("refused without a bound")
		}
	}
	if b.Held() != 100<<20 {
		t.Errorf("held %d", b.Held())
	}
	for range 100 {
		b.release(b.Conn)
	}
	k := &TCPBudget{}
	if !k.admit() || k.Held() != 0 {
		t.Errorf("kernel stack: held %d", k.Held())
	}
	if b.Held() != 0 {
		t.Errorf("held %d after the releases", b.Held())
	}
}

// sizedConn records SetBufferSizes calls; it is a readNotifier so that
// socketOf finds it.
type sizedConn struct {
	net.Conn
	rcv, snd int
	fixed    bool
}

func (c *sizedConn) SetBufferSizes(rcv, snd int, fixed bool) bool {
	c.rcv, c.snd, c.fixed = rcv, snd, fixed
	return true
}

func (c *sizedConn) NotifyReadable(func()) (func(), bool) { return func() {}, true }

// TestParkedReservation checks the park side of TCPBudget: a parked
// connection's buffers are cut (auto-tuning left on) and it keeps only
// their reservation; resumed with room, it gets its initial buffers back;
// resumed without, it goes on with its parked buffers fixed (counted), and
// with room at a later resume gets its maxima, fixed.
func TestParkedReservation(t *testing.T) {
	const rcv, snd, conn = 64 << 10, 32 << 10, 96 << 10
	p, err := bufring.NewBytePool(bufring.ByteConfig{Sizes: []int{32 << 10}, Limit: 4 * conn})
	if err != nil {
		t.Fatal(err)
	}
	fe := &Frontend{env: &Env{TCP: TCPBudget{Pool: p, Conn: conn, Rcv: rcv, Snd: snd, DefRcv: 16 << 10, DefSnd: 8 << 10,
		ParkedRcv: 4 << 10, ParkedSnd: 4 << 10, Wait: time.Second}}}
	b := &fe.env.TCP
	sock := &sizedConn{}
	c := &clientConn{Conn: sock, fe: fe}
	if !b.admit() {
		t.Fatal("refused")
	}
	c.reserved.Store(b.Conn)
	c.shrinkBuffers()
	if sock.rcv != 4<<10 || sock.snd != 4<<10 || sock.fixed || b.Held() != 8<<10 || p.Stats().Reserved != 8<<10 {
		t.Fatalf("parked: sizes %+v, held %d, pool %d", sock, b.Held(), p.Stats().Reserved)
	}
	c.regrowBuffers()
	if sock.rcv != 16<<10 || sock.snd != 8<<10 || sock.fixed || b.Held() != conn || b.Small() != 0 {
		t.Fatalf("resumed with room: sizes %+v, held %d", sock, b.Held())
	}
	c.shrinkBuffers()
	rest := 4*conn - int64(8<<10)
	if !p.TryReserve(rest) {
		t.Fatal("could not fill the pool")
	}
	c.regrowBuffers()
	if sock.rcv != 4<<10 || !sock.fixed || b.Held() != 8<<10 || b.Small() != 1 || !c.pinned {
		t.Fatalf("resumed without room: sizes %+v, held %d, small %d", sock, b.Held(), b.Small())
	}
	p.Unreserve(rest)
	c.regrowBuffers()
	if sock.rcv != rcv || sock.snd != snd || !sock.fixed || b.Held() != conn {
		t.Fatalf("resumed with room after a small resume: sizes %+v, held %d", sock, b.Held())
	}
	b.release(c.reserved.Load())
	if s := p.Stats(); b.Held() != 0 || s.Reserved != 0 {
		t.Errorf("not all given back: held %d, %+v", b.Held(), s)
	}
}

// TestReserveDial checks a backend dial's reservation: it waits for room
// until its context ends (ErrTCPBudget), is woken by a release, and its
// release gives the room back once however often it is called.
func TestReserveDial(t *testing.T) {
	const conn = 32 << 10
	p, err := bufring.NewBytePool(bufring.ByteConfig{Sizes: []int{conn}, Limit: 3 * conn, ReserveLimit: conn})
	if err != nil {
		t.Fatal(err)
	}
	b := &TCPBudget{Pool: p, Conn: conn}
	release, err := b.ReserveDial(context.Background())
	if err != nil || b.Backend() != conn {
		t.Fatalf("first dial: %v, %d reserved", err, b.Backend())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.ReserveDial(ctx); !errors.Is(err, ErrTCPBudget) || !errors.Is(err, context.DeadlineExceeded) {
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
	if r, err := (&TCPBudget{}).ReserveDial(context.Background()); r != nil || err != nil {
		t.Errorf("kernel stack: %v, %v", r != nil, err)
	}
}
