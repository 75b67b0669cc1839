package engine_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFrontendRefusesTwoFramings: a request framed by both Content-Length
// and Transfer-Encoding (RFC 9112 section 6.3), or by Transfer-Encoding in
// HTTP/1.0 (section 6.1), gets 400 and its connection closed, from the
// http and https frontends, and nothing of it or of what the client
// pipelined behind it reaches the origin (nginx): no request smuggling.
// curl sends one with both fields; the pipelined attacks are written on a
// raw connection. Requests framed one way pass.
func TestFrontendRefusesTwoFramings(t *testing.T) {
	t.Parallel()
	f, _ := allFrontendsLab(t, nginxHTTP1, "")
	httpURL, httpsURL := f.env.FrontendURL("http"), f.env.FrontendURL("https")
	backendRequests := func() float64 { return f.env.Engine.Stats().BackendRequests }

	curl := func(args ...string) string {
		t.Helper()
		out, err := runIn(t, f.env.StartClient, 30*time.Second, "curl", append([]string{"-sS", "-k", "-m", "10", "-o", "/dev/null", "-D", "-"}, args...)...)
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return out
	}
	before := backendRequests()
	for _, base := range []string{httpURL, httpsURL} {
		out := curl("--http1.1", "-H", "Content-Length: 5", "-H", "Transfer-Encoding: chunked", "-d", "hello", base+"/up/both")
		if !strings.HasPrefix(out, "HTTP/1.1 400") || !strings.Contains(strings.ToLower(out), "connection: close") {
			t.Errorf("%s: curl with Content-Length and Transfer-Encoding got\n%s\nwant 400 with Connection: close", base, out)
		}
	}
	if n := backendRequests() - before; n != 0 {
		t.Errorf("%v requests framed two ways reached the origin", n)
	}
	// One way or the other, uploads pass (nginx stores them).
	for _, base := range []string{httpURL, httpsURL} {
		for _, hdr := range []string{"Transfer-Encoding: chunked", "Content-Length: 5"} {
			if out := curl("--http1.1", "-X", "PUT", "-H", hdr, "-d", "hello", base+"/up/one"); !strings.HasPrefix(out, "HTTP/1.1 201") && !strings.HasPrefix(out, "HTTP/1.1 204") {
				t.Errorf("%s: PUT with %s got\n%s", base, hdr, out)
			}
		}
	}

	// Pipelined: the request smuggled behind the body must not be served.
	const smuggled = "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct{ name, req string }{
		{"both", "POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"both, length covers the smuggled request", "POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"HTTP/1.0 chunked", "POST /up/a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
	} {
		for _, tlsOn := range []bool{false, true} {
			addr := strings.TrimPrefix(httpURL, "http://")
			if tlsOn {
				addr = strings.TrimPrefix(httpsURL, "https://")
			}
			before := backendRequests()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c, err := f.env.Dial(ctx, "tcp", addr)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if tlsOn {
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
				c = tc
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s (tls %v): %v", tc.name, tlsOn, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !resp.Close {
				t.Errorf("%s (tls %v): status %d, close %v; want 400 and the connection closed", tc.name, tlsOn, resp.StatusCode, resp.Close)
			}
			// Nothing more: the connection ends after the 400.
			if extra, err := br.ReadByte(); err == nil || !(errors.Is(err, io.EOF) || isReset(err)) {
				t.Errorf("%s (tls %v): after the 400, read %q, %v; want the connection closed", tc.name, tlsOn, extra, err)
			}
			c.Close()
			if n := backendRequests() - before; n != 0 {
				t.Errorf("%s (tls %v): %v requests reached the origin", tc.name, tlsOn, n)
			}
		}
	}
}

// TestFrontendMalformedChunkedBody: a chunked request body that breaks
// RFC 9112 section 7.1 (bare LF line ends, a chunk size past 64 bits)
// gets 400 from the gateway with its connection closed, so nothing after
// it is read as a request; the backend (nginx) is not blamed: no 502, no
// backend failure counted. The gateway answered 502 before, counting a
// failure of the server.
func TestFrontendMalformedChunkedBody(t *testing.T) {
	t.Parallel()
	f := tcpLab(t, nginxHTTP1, "")
	addr := strings.TrimPrefix(f.env.FrontendURL("http"), "http://")
	for _, body := range []string{
		"5\nhello\n0\n\n",
		"fffffffffffffffff\r\nhello\r\n0\r\n\r\n",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := f.env.Dial(ctx, "tcp", addr)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "PUT /up/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+body+
			"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !resp.Close {
			t.Errorf("body %q: status %d, close %v; want 400 and the connection closed", body, resp.StatusCode, resp.Close)
		}
		if extra, err := br.ReadByte(); err == nil || !(errors.Is(err, io.EOF) || isReset(err)) {
			t.Errorf("body %q: after the 400, read %q, %v; want the connection closed", body, extra, err)
		}
		c.Close()
	}
	for reason, n := range f.env.Engine.Stats().Engine.Backends["origins"].Failures {
		if n > 0 {
			t.Errorf("malformed client bodies counted as backend failures: %s %d", reason, n)
		}
	}
}
