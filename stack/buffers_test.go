package stack_test

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/stack/stacktest"
)

type bufferSizer interface {
	SetBufferSizes(rcv, snd int) bool
}

// TestSetBufferSizes cuts an accepted connection's buffers to netstack's
// 4 KiB floor and grows them again (what the engine does to a parked
// connection), each time with 1 MiB going through each way intact; a
// dialed connection cannot.
func TestSetBufferSizes(t *testing.T) {
	r := stacktest.NewXDPPair(t, stacktest.XDPOptions{})
	l, err := r.A.ListenTCP(netip.AddrPortFrom(stacktest.AddrA4, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := r.B.DialTCP(testCtx(t), netip.AddrPortFrom(stacktest.AddrA4, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	if sc == nil {
		t.FailNow()
	}
	defer sc.Close()
	if s, ok := c.(bufferSizer); !ok || s.SetBufferSizes(4<<10, 4<<10) {
		t.Error("a dialed connection set its buffer sizes")
	}
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	through := func(from, to net.Conn) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			_, err := from.Write(msg)
			done <- err
		}()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(to, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("1 MiB through: %v, intact %v", err, bytes.Equal(got, msg))
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for _, size := range []int{4 << 10, 1 << 20} {
		if !sc.(bufferSizer).SetBufferSizes(size, size) {
			t.Fatal("an accepted connection did not set its buffer sizes")
		}
		through(c, sc)
		through(sc, c)
	}
}
