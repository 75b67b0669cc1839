package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/engine/frontend"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// withFrontend adds YAML flow-map entries to the test frontend of baseConfig.
func withFrontend(cfg, extra string) string {
	return strings.Replace(cfg, "timeouts: {header: 2s, idle: 5s}}", "timeouts: {header: 2s, idle: 5s"+extra, 1)
}

// A client that sends its headers and part of its body, then stalls, is cut
// after timeouts.body with a 408 and counted; one that sends slowly but
// keeps sending is not, though it takes longer than the timeout in all.
func TestBodyTimeout(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 1, "")
	const timeout = 300 * time.Millisecond
	httpEng := loopEngine(t, roots, withFrontend(baseConfig("http", os, ""), ", body: 300ms}}"))
	h3Eng := loopEngine(t, roots, withFrontend(baseConfig("h3", os, ""), ", body: 300ms}}"))
	cut := func(e *Engine) float64 {
		return counterValue(t, e, "xdpnet_client_timeouts_total", map[string]string{"frontend": "fe", "reason": "body"})
	}

	// HTTP/1.1 on a raw connection: Content-Length n, half of it sent.
	for _, tc := range []struct {
		name, path string
		n          int
	}{
		{"http1 buffered body", "/echo", 1000},                              // read whole before the first attempt
		{"http1 streamed body", "/sleep?d=10s", 4 * frontend.MaxReplayBody}, // streamed to the origin
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := cut(httpEng)
			c, err := net.Dial("tcp", httpEng.FrontendAddr("fe").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", tc.path, tc.n, bytes.Repeat([]byte("a"), tc.n/2))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
				t.Errorf("status %d, close %v; want 408 and Connection: close", resp.StatusCode, resp.Close)
			}
			if d := time.Since(start); d < timeout {
				t.Errorf("cut after %v, before the %v timeout", d, timeout)
			}
			if got := cut(httpEng) - before; got != 1 {
				t.Errorf("body timeouts counted: %v, want 1", got)
			}
		})
	}

	t.Run("http1 slow but steady", func(t *testing.T) {
		const chunks = 12 // 12 x 50ms: twice the timeout in all, a sixth of it between reads
		pr, pw := io.Pipe()
		go func() {
			for range chunks {
				pw.Write([]byte("0123456789"))
				time.Sleep(timeout / 6)
			}
			pw.Close()
		}()
		req, _ := http.NewRequest(http.MethodPost, "http://"+httpEng.FrontendAddr("fe").String()+"/echo", pr)
		req.ContentLength = chunks * 10
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != chunks*10 {
			t.Errorf("status %d, %d bytes echoed; want 200 and %d", resp.StatusCode, len(b), chunks*10)
		}
	})

	// h2c and HTTP/3: the body comes from a pipe that stops after a part.
	stalled := func(t *testing.T, c *http.Client, url string, e *Engine) {
		t.Helper()
		before := cut(e)
		pr, pw := io.Pipe()
		defer pw.Close()
		go pw.Write(bytes.Repeat([]byte("a"), 1000))
		req, _ := http.NewRequest(http.MethodPost, url+"/sleep?d=10s", pr)
		req.ContentLength = 4 * frontend.MaxReplayBody
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("status %d, want 408", resp.StatusCode)
		}
		if got := cut(e) - before; got != 1 {
			t.Errorf("body timeouts counted: %v, want 1", got)
		}
		if got := counterValue(t, e, "xdpnet_requests_total", map[string]string{"result": "body_timeout", "class": "4xx"}); got < 1 {
			t.Errorf("requests with result body_timeout: %v", got)
		}
	}
	t.Run("h2c", func(t *testing.T) {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: &protos}
		defer tr.CloseIdleConnections()
		stalled(t, &http.Client{Timeout: 10 * time.Second, Transport: tr}, "http://"+httpEng.FrontendAddr("fe").String(), httpEng)
	})
	t.Run("h3", func(t *testing.T) {
		tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		defer tr.Close()
		stalled(t, &http.Client{Timeout: 10 * time.Second, Transport: tr}, "https://"+h3Eng.FrontendAddr("fe").String(), h3Eng)
	})
}

// Above max_connections (the frontend's or the engine's) a new connection
// is refused and counted: TCP ones are closed right after accept, QUIC ones
// get CONNECTION_REFUSED. Closing an admitted connection frees its slot.
func TestConnectionLimits(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 1, "") // raw streams echo
	const limit = 2
	for _, proto := range []string{"http", "tcp", "h3"} {
		for _, scope := range []string{"frontend", "engine"} {
			t.Run(proto+"/"+scope, func(t *testing.T) {
				cfg := baseConfig(proto, os, "")
				reason := frontend.RefusedFrontend
				if scope == "frontend" {
					cfg = withFrontend(cfg, "}, max_connections: 2}")
				} else {
					cfg = "max_connections: 2\n" + cfg
					reason = frontend.RefusedEngine
				}
				e := loopEngine(t, roots, cfg)
				addr := e.FrontendAddr("fe").String()
				refused := func() float64 {
					return counterValue(t, e, "xdpnet_connections_refused_total", map[string]string{"frontend": "fe", "reason": reason})
				}
				// open makes a connection and proves it served; ok is
				// false when the engine refused it.
				var open func() (io.Closer, bool)
				switch proto {
				case "http":
					open = func() (io.Closer, bool) { return openHTTP(t, addr) }
				case "tcp":
					open = func() (io.Closer, bool) { return openTunnel(t, addr) }
				case "h3":
					open = func() (io.Closer, bool) { return openQUIC(t, addr) }
				}
				var held []io.Closer
				for i := range limit {
					c, ok := open()
					if !ok {
						t.Fatalf("connection %d of %d refused", i+1, limit)
					}
					held = append(held, c)
				}
				defer func() {
					for _, c := range held {
						c.Close()
					}
				}()
				if c, ok := open(); ok {
					c.Close()
					t.Fatalf("connection %d admitted over max_connections %d", limit+1, limit)
				}
				if got := refused(); got != 1 {
					t.Errorf("refusals counted (%s): %v, want 1", reason, got)
				}
				if got := e.Stats().ConnsRefused; got != 1 {
					t.Errorf("stats connections_refused %v, want 1", got)
				}
				// A slot frees when an admitted connection closes.
				held[0].Close()
				held = held[1:]
				testutil.WaitFor(t, "a slot freed after an admitted connection closed", func() bool {
					c, ok := open()
					if ok {
						held = append(held, c)
					}
					return ok
				})
			})
		}
	}
}

// openHTTP opens a TCP connection and sends a request on it: false if the
// engine closed it instead of answering.
func openHTTP(t *testing.T, addr string) (io.Closer, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, false
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.SetDeadline(time.Time{})
	return c, true
}

// openTunnel opens a tunnel and echoes a byte through it.
func openTunnel(t *testing.T, addr string) (io.Closer, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := []byte{'x'}
	_, err = c.Write(b)
	if err == nil {
		_, err = io.ReadFull(c, b)
	}
	if err != nil {
		c.Close()
		return nil, false
	}
	c.SetDeadline(time.Time{})
	return c, true
}

// openQUIC opens a QUIC connection: false if it was refused with
// CONNECTION_REFUSED (any other error fails the test).
func openQUIC(t *testing.T, addr string) (io.Closer, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}, nil)
	if err != nil {
		var te *quic.TransportError
		if errors.As(err, &te) && te.ErrorCode == quic.ConnectionRefused && te.Remote {
			return nil, false
		}
		t.Fatalf("dial: %v", err)
	}
	return quicCloser{c}, true
}

type quicCloser struct{ c *quic.Conn }

func (q quicCloser) Close() error { return q.c.CloseWithError(0, "") }
