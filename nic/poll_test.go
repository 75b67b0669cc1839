package nic

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
)

// TestWaitLosesNoWakeup sends datagrams one at a time, each only after the
// port's receiver has taken the previous one and gone back to Wait(-1), so
// the packet races the receiver parking in the edge-triggered poller. With
// the device-check slice stretched to an hour, a lost wakeup hangs the
// receiver and the test fails instead of stalling for a second.
func TestWaitLosesNoWakeup(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	p := openPort(t, l, lk, steer(t, l, lk), 0, Config{})
	p.deviceCheck = time.Hour // before the receiver below starts waiting

	got := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		descs := make([]Desc, 64)
		for {
			if _, err := p.Wait(-1); err != nil {
				done <- err
				return
			}
			n, err := p.Receive(descs)
			if err != nil {
				done <- err
				return
			}
			p.Release(descs[:n])
			if n > 0 {
				got <- n
			}
		}
	}()

	const packets = 200
	c := clientConn(t, l, lk.PeerV4()[0], 0)
	dst := netip.AddrPortFrom(lk.EngineV4, echoPort)
	for i := range packets {
		if _, err := c.WriteToUDPAddrPort([]byte{byte(i)}, dst); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-got:
			if n != 1 {
				t.Fatalf("packet %d: received %d frames, want 1", i, n)
			}
		case err := <-done:
			t.Fatalf("receiver after %d packets: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("packet %d not received within 10s: a lost wakeup", i)
		}
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.PollSleeps == 0 {
		t.Fatalf("no Wait slept in %d packets: the test did not exercise parking", packets)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("receiver ended without an error after Close")
	}
}
