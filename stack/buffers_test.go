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
	SetBufferSizes(rcv, snd int, fixed bool) bool
}

// TestSetBufferSizes cuts an accepted connection's buffers to netstack's
// 4 KiB floor and grows them again, with and without auto-tuning (what the
// engine does to a parked connection), each time with 1 MiB going through
// each way intact; a dialed connection cannot.
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
	if s, ok := c.(bufferSizer); !ok || s.SetBufferSizes(4<<10, 4<<10, false) {
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
	for _, sz := range []struct {
		size  int
		fixed bool
	}{{4 << 10, false}, {64 << 10, false}, {4 << 10, true}, {1 << 20, true}} {
		if !sc.(bufferSizer).SetBufferSizes(sz.size, sz.size, sz.fixed) {
			t.Fatal("an accepted connection did not set its buffer sizes")
		}
		through(c, sc)
		through(sc, c)
	}
}
