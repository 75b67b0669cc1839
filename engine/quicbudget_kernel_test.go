package engine

import (
	"fmt"
	"io"
	"testing"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/frontend"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// On the kernel stack, where TCP connections reserve nothing (the kernel's
// sysctls bound their buffers), QUIC connections still reserve theirs:
// quic-go buffers in the process. With room for 3 QUIC connections of
// 64 KiB beside the two payload buffers the reservations leave, the
// backend's health check holding one, quic-go h3 client connections are
// admitted until one is refused with CONNECTION_REFUSED and counted
// (reason budget), and every reservation is back when they close.
func TestQUICBudgetKernelStack(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 1, "")
	const conn = 64 << 10
	cfg := fmt.Sprintf("buffers: {memory: %d, accept_wait: 100ms, quic_receive: {default: 32KiB, max: 32KiB}, quic_send: 32KiB}\n",
		2*config.PayloadBufferSize+3*conn) + baseConfig("h3", os, "")
	e := loopEngine(t, roots, cfg)
	testutil.WaitFor(t, "the health check's connection", func() bool { return e.Stats().Engine.QUIC.BackendReservedBytes == conn })
	addr := e.FrontendAddr("fe").String()
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	refused := false
	for range 8 {
		c, ok := openQUIC(t, addr)
		if !ok {
			refused = true
			break
		}
		held = append(held, c)
	}
	if !refused || len(held) != 2 {
		t.Fatalf("%d connections admitted, refused %v: want 2 admitted (3 reservations' room, the health check's among them), then a refusal", len(held), refused)
	}
	if got := counterValue(t, e, "xdpnet_connections_refused_total", map[string]string{"frontend": "fe", "reason": frontend.RefusedBudget}); got != 1 {
		t.Errorf("budget refusals counted: %v, want 1", got)
	}
	if got := e.Stats().Engine.QUIC.ReservedBytes; got != 2*conn {
		t.Errorf("client connections reserve %d bytes, want %d", got, 2*conn)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	testutil.WaitFor(t, "the client reservations back", func() bool { return e.Stats().Engine.QUIC.ReservedBytes == 0 })
	c, ok := openQUIC(t, addr)
	if !ok {
		t.Fatal("a connection refused once the others closed")
	}
	held = append(held, c)
}
