package frontend

import (
	"net"
	"sync/atomic"
)

// A goroutine starts with a small stack, which the runtime doubles and
// copies whenever a call goes deeper than it. The proxy's deep paths (a
// request's forward through the backend's client, a TLS write, down
// through netstack to the link) run on goroutines that net/http's HTTP/2
// server and quic-go's HTTP/3 server start for every request, and on the
// goroutine of every TLS handshake: each grew its stack two or three times
// at the bottom of such a path, where copying means walking every frame
// (runtime.copystack was 12-15% of the gateway's CPU under h2load over
// TLS, bench/peers). growStack grows it once instead, at the top, where
// the stack is a few frames to copy. The HTTP/2 server also writes from a
// goroutine it starts for each flush (writeFrameAsync); its connection
// grows the stack at the top of the write (deepWriter, clientConn.Write).

// grownStack is the stack a goroutine that runs those paths is given:
// what the deepest of them needs (a handshake through netstack on AF_XDP
// reaches past 16 KiB).
const grownStack = 32 << 10

// growStack makes the calling goroutine's stack at least grownStack: its
// frame needs more than half of it, so the runtime grows the stack to it
// in one step (or not at all when it is that large already).
//
//go:noinline
func growStack() {
	var pad [grownStack/2 + 1024]byte
	touchPad(&pad)
}

//go:noinline
func touchPad(p *[grownStack/2 + 1024]byte) { p[0] = 1 }

// deepWriter is an https connection under its TLS: once the handshake
// chose h2, a write grows the writing goroutine's stack (growStack) before
// netstack's send path below it.
type deepWriter struct {
	net.Conn
	grow atomic.Bool
}

func (c *deepWriter) Write(b []byte) (int, error) {
	if c.grow.Load() {
		growStack()
	}
	return c.Conn.Write(b)
}

// NetConn is the accepted connection (socketOf and workerAddrs look
// through it).
func (c *deepWriter) NetConn() net.Conn { return c.Conn }
