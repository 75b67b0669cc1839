package engine_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/proxyproto"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// dialFrom opens a TCP connection to addr from the client namespace's
// address src.
func dialFrom(t *testing.T, ns *lab.NS, src netip.Addr, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
		c, err = d.Dial("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// proxiedClient is the address the test's PROXY headers carry: a client
// behind the balancer (198.18.1.2), in the lab's client range; nothing is
// ever sent to it.
var proxiedClient = netip.MustParseAddrPort("198.18.1.77:4242")

// PROXY protocol v2 on an http frontend that trusts 198.18.1.2 only, in
// front of caddy (whose /xff answers the X-Forwarded-For it got): a
// header from the trusted source gives the client address to
// X-Forwarded-For and the access log, from the test's sender and from
// HAProxy (send-proxy-v2) in front of curl; from it, curl without a header
// or with a v1 one and a malformed header are closed and counted; from
// 198.18.1.3 a header is never read as one, and curl is served with its
// own address.
func TestLabProxyProtocol(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	rl := startRouteLab(t, fmt.Sprintf("access_log: {path: %q}\n", logFile),
		"    proxy_protocol: {trusted: [198.18.1.2/32], timeout: 2s}\n")
	env := rl.env
	trusted, untrusted := env.Lab.ClientLink.PeerV4()[0], env.Lab.ClientLink.PeerV4()[1]
	const front = "198.18.1.1:8080"
	header := proxyproto.Header{Command: proxyproto.Proxy, Source: proxiedClient,
		Destination: netip.MustParseAddrPort(front)}.Append(nil)
	request := "GET /xff HTTP/1.1\r\nHost: x.wild.test\r\nConnection: close\r\n\r\n"

	// The trusted balancer's header: the proxied address is the client.
	c := dialFrom(t, env.Lab.Client, trusted, front)
	if _, err := c.Write(append(header, request...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("proxied request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != proxiedClient.Addr().String() {
		t.Errorf("proxied request: %d, X-Forwarded-For at caddy %q, want %s", resp.StatusCode, body, proxiedClient.Addr())
	}
	if l := waitLines(t, logFile, 1)[0]; l["client"] != proxiedClient.String() || l["path"] != "/xff" {
		t.Errorf("access log client %v path %v, want %s /xff", l["client"], l["path"], proxiedClient)
	}

	// HAProxy as the balancer (send-proxy-v2 from the trusted address):
	// curl's address behind it reaches caddy.
	startProxyV2Balancer(t, env, "127.0.0.1:9000", front, trusted)
	var out string
	if !testutil.Eventually(func() bool {
		out, err = runIn(t, env.StartClient, 20*time.Second, "curl", "--http1.1", "-sS", "-m", "5",
			"-H", "Host: x.wild.test", "http://127.0.0.1:9000/xff")
		return err == nil
	}) || out != "127.0.0.1" {
		t.Errorf("curl through haproxy: %q, %v; want caddy to see X-Forwarded-For 127.0.0.1", out, err)
	}

	// From the trusted source without a header (curl): closed.
	for _, v1 := range []bool{false, true} {
		args := []string{"--http1.1", "-sS", "-m", "5", "--interface", trusted.String(), "-H", "Host: x.wild.test", "http://" + front + "/xff"}
		if v1 { // a version 1 (text) header is no v2 header either
			args = append(args, "--haproxy-protocol")
		}
		if out, err := runIn(t, env.StartClient, 20*time.Second, "curl", args...); err == nil {
			t.Errorf("curl from the trusted source (PROXY v1 %v) was served: %q", v1, out)
		}
	}
	// A malformed header (version 1 in the version nibble): closed,
	// nothing answered.
	bad := append([]byte(nil), header...)
	bad[12] = 0x11
	c = dialFrom(t, env.Lab.Client, trusted, front)
	c.Write(append(bad, request...))
	if n, err := io.Copy(io.Discard, c); n != 0 {
		t.Errorf("malformed header: %d bytes answered (%v), want the connection closed", n, err)
	}

	// From another source a header is never trusted: its bytes are the
	// request's, which is then not HTTP.
	c = dialFrom(t, env.Lab.Client, untrusted, front)
	c.Write(append(header, request...))
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode == 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("untrusted header honoured: 200 %q", b)
	}
	// ... and curl from there is served with its own address.
	out, err = runIn(t, env.StartClient, 20*time.Second, "curl", "--http1.1", "-sS", "-m", "5",
		"--interface", untrusted.String(), "-H", "Host: x.wild.test", "http://"+front+"/xff")
	if err != nil || out != untrusted.String() {
		t.Errorf("curl from %s: %q, %v; want its own address in X-Forwarded-For", untrusted, out, err)
	}

	text := metricsText(t, env)
	for result, want := range map[string]float64{"proxied": 2, "missing": 2, "malformed": 1, "untrusted": 2} {
		if got, _ := metricSum(text, regexp.MustCompile(`^xdpnet_proxy_protocol_total$`), `frontend="http"`, `result="`+result+`"`); got != want {
			t.Errorf("xdpnet_proxy_protocol_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}

// A tunnel to a backend with send_proxy_protocol: v2 starts with a header
// naming the client: the one a trusted balancer's header gave, else the
// connection's own. The test's TCP server behind the lab origin (which
// splices raw streams to it) reads the header, then echoes.
func TestLabSendProxyProtocol(t *testing.T) {
	const target = "198.18.2.10:7000"
	env := startLab(t, "xdp", enginelab.Options{Clients: 2, RawTarget: target, Config: `dataplane: xdp
admin: 127.0.0.1:0
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - {name: tcp, listen: "198.18.1.1:5201", protocol: tcp, backend: tunnel, proxy_protocol: {trusted: [198.18.1.2/32]}}
backends:
  - {name: tunnel, protocol: raw, send_proxy_protocol: v2, servers: [{address: "198.18.2.10:4433"}]}
`})
	var ln net.Listener
	if err := env.Lab.Backend.Do(func() (err error) { ln, err = net.Listen("tcp", target); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	headers := make(chan proxyproto.Header, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				h, err := proxyproto.Read(c)
				if err != nil {
					headers <- proxyproto.Header{}
					return
				}
				headers <- h
				io.Copy(c, c)
			}()
		}
	}()
	trusted, untrusted := env.Lab.ClientLink.PeerV4()[0], env.Lab.ClientLink.PeerV4()[1]
	const front = "198.18.1.1:5201"
	tunnel := func(c net.Conn, hdr []byte) (proxyproto.Header, string) {
		t.Helper()
		if _, err := c.Write(append(hdr, "hello"...)); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		echo, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("tunnel: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		select {
		case h := <-headers:
			return h, string(echo)
		case <-ctx.Done():
			t.Fatal("the target saw no tunnel")
			return proxyproto.Header{}, ""
		}
	}
	dst := netip.MustParseAddrPort(front)
	h, echo := tunnel(dialFrom(t, env.Lab.Client, trusted, front),
		proxyproto.Header{Command: proxyproto.Proxy, Source: proxiedClient, Destination: dst}.Append(nil))
	if h.Command != proxyproto.Proxy || h.Source != proxiedClient || h.Destination != dst || echo != "hello" {
		t.Errorf("through a trusted balancer: target saw %+v and echoed %q; want %s -> %s and hello", h, echo, proxiedClient, dst)
	}
	c := dialFrom(t, env.Lab.Client, untrusted, front)
	own, _ := netip.ParseAddrPort(c.LocalAddr().String())
	h, echo = tunnel(c, nil)
	if h.Source != own || h.Destination != dst || echo != "hello" {
		t.Errorf("direct client: target saw %+v and echoed %q; want %s -> %s and hello", h, echo, own, dst)
	}
}

// startProxyV2Balancer runs HAProxy in the client namespace as an L4
// balancer in TCP mode: it listens on bind and passes each connection to
// front from the source address trusted, with a PROXY v2 header first.
func startProxyV2Balancer(t *testing.T, env *enginelab.Env, bind, front string, trusted netip.Addr) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(`defaults
  mode tcp
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend lb
  bind `+bind+`
  default_backend gw
backend gw
  server engine `+front+` send-proxy-v2 source `+trusted.String()+`
`), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, env.Lab.Client, nil, "haproxy", "-db", "-f", cfg)
}
