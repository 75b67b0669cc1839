package engine_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// wsConfig puts the http and https frontends in front of a WebSocket echo
// server (x/net/websocket) reached as an http1 backend (/ws) and as an
// http1-tls one (/wss), and routes /h3 to an h3 backend, which has no
// HTTP/1.1 Upgrade. The %q are the https frontend's certificate and key,
// then the origins' CA.
const wsConfig = `dataplane: xdp
admin: 127.0.0.1:0
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - {name: http, listen: "198.18.1.1:8080", protocol: http, backend: ws, timeouts: {idle: 30s},
     routes: [{path_prefix: /wss, backend: wss}, {path_prefix: /h3, backend: h3}]}
  - {name: https, listen: "198.18.1.1:8444", protocol: https, backend: ws, timeouts: {idle: 30s},
     tls: {cert: %[1]q, key: %[2]q},
     routes: [{path_prefix: /wss, backend: wss}, {path_prefix: /h3, backend: h3}]}
backends:
  - name: ws
    protocol: http1
    health_check: {enabled: false}
    servers: [{name: s0, address: "198.18.2.10:8080"}]
  - name: wss
    protocol: http1-tls
    tls: {ca: %[3]q}
    health_check: {enabled: false}
    servers: [{name: s0, address: "198.18.2.11:8443"}]
  - name: h3
    protocol: h3
    tls: {ca: %[3]q}
    health_check: {enabled: false}
    servers: [{name: s0, address: "198.18.2.12:443"}]
`

// wsLab is the engine on stack in front of wsEcho over http1 and
// http1-tls; ended receives the path of each WebSocket the echo server
// saw end.
type wsLab struct {
	env   *enginelab.Env
	roots *x509.CertPool // the https frontend's certificate
	ended chan string
}

func startWSLab(t *testing.T, stack string) *wsLab {
	t.Helper()
	files := newOriginFiles(t, "198.18.2.11")
	fe := writeLabCert(t, filepath.Join(t.TempDir(), "https"), "198.18.1.1")
	roots := x509.NewCertPool()
	roots.AddCert(fe.leaf)
	cert, err := tls.LoadX509KeyPair(files.cert, files.key)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan string, 64)
	h := websocket.Server{Handler: func(ws *websocket.Conn) { wsEcho(ws, ended) }}
	plain := &http.Server{Handler: h}
	secure := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	env := startLab(t, stack, enginelab.Options{
		Config:    fmt.Sprintf(wsConfig, fe.cert, fe.key, files.cert),
		NoOrigins: true,
		BeforeEngine: func(l *lab.Lab) error {
			var lns []net.Listener
			for _, a := range []string{"198.18.2.10:8080", "198.18.2.11:8443"} {
				var ln net.Listener
				if err := l.Backend.Do(func() (err error) {
					ln, err = net.Listen("tcp", a)
					return err
				}); err != nil {
					for _, ln := range lns {
						ln.Close()
					}
					return err
				}
				lns = append(lns, ln)
			}
			var serving sync.WaitGroup
			serving.Go(func() { plain.Serve(lns[0]) })
			serving.Go(func() { secure.ServeTLS(lns[1], "", "") })
			// Registered before startLab's cleanup: runs after the
			// engine and the lab are gone.
			t.Cleanup(func() {
				plain.Close()
				secure.Close()
				serving.Wait()
			})
			return nil
		},
	})
	return &wsLab{env: env, roots: roots, ended: ended}
}

// wsEcho sends each message back, until the client closes or sends "bye",
// which the server answers by closing; a path ending in /bye is closed
// at once. ended gets the path when it returns.
func wsEcho(ws *websocket.Conn, ended chan<- string) {
	path := ws.Request().URL.Path
	defer func() { ended <- path }()
	defer ws.Close()
	if strings.HasSuffix(path, "/bye") {
		return
	}
	if strings.HasSuffix(path, "/headers") {
		h := ws.Request().Header
		websocket.Message.Send(ws, strings.Join([]string{h.Get("X-Forwarded-Proto"), h.Get("X-Forwarded-For"),
			h.Get("Keep-Alive"), h.Get("Via")}, "|"))
		return
	}
	ws.MaxPayloadBytes = 2 << 20
	for {
		var m []byte
		if err := websocket.Message.Receive(ws, &m); err != nil {
			return
		}
		if string(m) == "bye" {
			return
		}
		if err := websocket.Message.Send(ws, m); err != nil {
			return
		}
	}
}

// dial opens a WebSocket through the frontend (http or https) to path.
func (l *wsLab) dial(t *testing.T, frontend, path string, hdr http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := l.env.FrontendURL(frontend)
	c, err := l.env.Dial(ctx, "tcp", strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a hung test fails, nothing is timed
	var rwc io.ReadWriteCloser = c
	scheme := "ws"
	if strings.HasPrefix(base, "https") {
		tc := tls.Client(c, &tls.Config{ServerName: "198.18.1.1", RootCAs: l.roots, NextProtos: []string{"http/1.1"}})
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			t.Fatal(err)
		}
		rwc, scheme = tc, "wss"
	}
	host := strings.SplitN(base, "://", 2)[1]
	cfg, err := websocket.NewConfig(scheme+"://"+host+path, "http://"+host)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header = hdr
	ws, err := websocket.NewClient(cfg, rwc)
	if err != nil {
		rwc.Close()
		t.Fatalf("websocket handshake through %s to %s: %v", frontend, path, err)
	}
	ws.MaxPayloadBytes = 2 << 20
	return ws
}

// waitEnded waits for the echo server to see the WebSocket to path end.
func (l *wsLab) waitEnded(t *testing.T, path string) {
	t.Helper()
	select {
	case p := <-l.ended:
		if p != path {
			t.Fatalf("the echo server saw %s end, want %s", p, path)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the echo server did not see %s end", path)
	}
}

func tunnelsOf(env *enginelab.Env, frontend, result string) uint64 {
	return env.Engine.Stats().Engine.Frontends[frontend].Tunnels[result]
}

// TestWebSocket: WebSockets through the http and https frontends to an
// http1 and an http1-tls backend, on both data planes: messages both ways
// (several, one of 1 MiB), closed by the client and by the server; curl's
// raw handshake sees the 101 with the server's Sec-WebSocket-Accept; the
// server's refusal reaches the client as it is; an upgrade routed to an h3 backend gets 501 and never reaches a server as
// a plain GET.
func TestWebSocket(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			l := startWSLab(t, stack)
			big := make([]byte, 1<<20)
			rand.Read(big)
			var upgraded uint64
			for _, fe := range []string{"http", "https"} {
				for _, path := range []string{"/ws", "/wss"} {
					t.Run(fe+path, func(t *testing.T) {
						ws := l.dial(t, fe, path, nil)
						for i, m := range [][]byte{[]byte("hello"), big, []byte("again")} {
							if err := websocket.Message.Send(ws, m); err != nil {
								t.Fatalf("send %d: %v", i, err)
							}
							var got []byte
							if err := websocket.Message.Receive(ws, &got); err != nil {
								t.Fatalf("receive %d: %v", i, err)
							}
							if !bytes.Equal(got, m) {
								t.Fatalf("message %d: got %d bytes, want %d", i, len(got), len(m))
							}
						}
						ws.Close() // closed by the client
						l.waitEnded(t, path)

						ws = l.dial(t, fe, path, nil)
						if err := websocket.Message.Send(ws, "bye"); err != nil {
							t.Fatal(err)
						}
						var got []byte
						if err := websocket.Message.Receive(ws, &got); !errors.Is(err, io.EOF) {
							t.Fatalf("after the server closed: %v (%q), want EOF", err, got)
						}
						ws.Close()
						l.waitEnded(t, path)
						upgraded += 2
					})
				}
			}
			for _, fe := range []string{"http", "https"} {
				t.Run("headers-"+fe, func(t *testing.T) {
					ws := l.dial(t, fe, "/ws/headers", http.Header{"Keep-Alive": {"timeout=5"}})
					defer ws.Close()
					var got string
					if err := websocket.Message.Receive(ws, &got); err != nil {
						t.Fatal(err)
					}
					// Keep-Alive is hop-by-hop: dropped as for other requests.
					if want := fe + "|198.18.1.2||1.1 xdpnet"; got != want {
						t.Errorf("the server saw X-Forwarded-Proto|X-Forwarded-For|Keep-Alive|Via %q, want %q", got, want)
					}
					l.waitEnded(t, "/ws/headers")
					upgraded++
				})
			}
			// One dedicated backend connection each, none kept.
			testutil.WaitFor(t, "the WebSockets counted and their backend connections closed", func() bool {
				return tunnelsOf(l.env, "http", "ok")+tunnelsOf(l.env, "https", "ok")+
					tunnelsOf(l.env, "http", "reset")+tunnelsOf(l.env, "https", "reset") == upgraded &&
					l.env.Engine.Stats().BackendConnsOpen == 0
			})
			if n := l.env.Engine.Stats().BackendConnsOpened; n != float64(upgraded) {
				t.Errorf("%v backend connections opened, want %d (one per WebSocket)", n, upgraded)
			}

			for _, fe := range []string{"http", "https"} {
				t.Run("curl-"+fe, func(t *testing.T) {
					p := startProc(t, l.env.Lab.Client, nil, "curl", "-sS", "-i", "-N", "--http1.1", "-k",
						"-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
						"-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", l.env.FrontendURL(fe)+"/ws/bye")
					out, err := p.wait(t, 30*time.Second)
					if err != nil {
						t.Fatalf("curl: %v\n%s", err, out)
					}
					// RFC 6455 section 1.3's example key and its accept value.
					if !strings.HasPrefix(out, "HTTP/1.1 101 Switching Protocols\r\n") ||
						!strings.Contains(out, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") {
						t.Fatalf("curl's handshake:\n%s", out)
					}
					l.waitEnded(t, "/ws/bye")
				})
			}

			t.Run("refused", func(t *testing.T) {
				// The server answers a version it does not speak with 400
				// (RFC 6455 section 4.4): forwarded as a normal response.
				p := startProc(t, l.env.Lab.Client, nil, "curl", "-sS", "-i", "--http1.1",
					"-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 99",
					"-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", l.env.FrontendURL("http")+"/ws")
				out, err := p.wait(t, 30*time.Second)
				if err != nil {
					t.Fatalf("curl: %v\n%s", err, out)
				}
				if !strings.HasPrefix(out, "HTTP/1.1 400 ") {
					t.Fatalf("an upgrade the server refused:\n%s", out)
				}
			})

			t.Run("h3-backend", func(t *testing.T) {
				p := startProc(t, l.env.Lab.Client, nil, "curl", "-sS", "-i", "--http1.1",
					"-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
					"-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", l.env.FrontendURL("http")+"/h3")
				out, err := p.wait(t, 30*time.Second)
				if err != nil {
					t.Fatalf("curl: %v\n%s", err, out)
				}
				if !strings.HasPrefix(out, "HTTP/1.1 501 ") || !strings.Contains(out, "speaks h3") {
					t.Fatalf("upgrade to an h3 backend:\n%s", out)
				}
				if n := tunnelsOf(l.env, "http", "not_implemented"); n != 1 {
					t.Fatalf("%d upgrades counted not_implemented, want 1", n)
				}
			})
		})
	}
}

// TestWebSocketDrain: a drain whose deadline passes cuts an open WebSocket
// (the client's connection ends, the server's too), says so in its error as
// for a cut tunnel, and counts it as a cut tunnel, not as a cut request.
func TestWebSocketDrain(t *testing.T) {
	l := startWSLab(t, "xdp")
	ws := l.dial(t, "http", "/ws", nil)
	defer ws.Close()
	if err := websocket.Message.Send(ws, "hello"); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := websocket.Message.Receive(ws, &got); err != nil || got != "hello" {
		t.Fatalf("echo before the drain: %q, %v", got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.env.Engine.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain: %v, want the deadline's error (it cut a WebSocket)", err)
	}
	if err := websocket.Message.Receive(ws, &got); err == nil {
		t.Fatalf("the WebSocket still carried %q after the drain", got)
	}
	l.waitEnded(t, "/ws")
	s := l.env.Engine.Stats().Engine
	if n := s.Frontends["http"].Tunnels["cut"]; n != 1 {
		t.Errorf("%d tunnels counted cut, want 1", n)
	}
	if n := s.DrainCutRequests; n != 0 {
		t.Errorf("%d requests counted cut, want 0", n)
	}
}
