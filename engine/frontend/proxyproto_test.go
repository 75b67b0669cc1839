package frontend

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/stats"
	"github.com/xdpnet/xdpnet/internal/proxyproto"
)

// A trusted source that sends no header in time is closed and counted;
// Close returns with a header still awaited (its connection closed) and
// joins the listener's goroutines; a header then reads as proxied.
func TestProxyListenerTimeoutAndClose(t *testing.T) {
	cfg, err := config.Parse([]byte(`dataplane: kernel
admin: "off"
frontends: [{name: t, listen: "127.0.0.1:1", protocol: tcp, backend: b, proxy_protocol: {trusted: [127.0.0.0/8], timeout: 200ms}}]
backends: [{name: b, protocol: raw, servers: [{address: "127.0.0.1:2"}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Log: slog.New(slog.DiscardHandler), Counters: &stats.Counters{}}
	fe := &Frontend{cfg: cfg.Frontends[0], env: env}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := fe.proxyListen(raw)
	accepted := make(chan net.Conn, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	silent, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, silent); n != 0 || err != nil {
		t.Errorf("silent trusted connection: read %d, %v; want closed by the server", n, err)
	}
	if n := env.Counters.ProxyProtocol.WithLabelValues("t", ProxyTimeout).Load(); n != 1 {
		t.Errorf("timeouts counted %d, want 1", n)
	}

	good, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	h := proxyproto.Header{Command: proxyproto.Proxy}
	h.Source, _ = addrPort(&net.TCPAddr{IP: net.IPv4(198, 18, 1, 77), Port: 4242})
	h.Destination, _ = addrPort(raw.Addr())
	good.Write(h.Append(nil))
	c := <-accepted
	if c.RemoteAddr().String() != "198.18.1.77:4242" {
		t.Errorf("proxied connection's RemoteAddr %v", c.RemoteAddr())
	}
	if wl, wr := workerAddrs(c); wr.String() != good.LocalAddr().String() || wl.String() != raw.Addr().String() {
		t.Errorf("worker addresses %v %v, want the connection's", wl, wr)
	}
	c.Close()

	pending, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	pending.Write(proxyproto.Signature[:5]) // a header begun, never finished
	done := make(chan struct{})
	go func() { ln.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a header pending")
	}
	if _, ok := <-accepted; ok {
		t.Error("Accept returned a connection after Close")
	}
}
