package frontend

import (
	"net/http"
	"testing"
)

func TestWebSocketUpgrade(t *testing.T) {
	for _, c := range []struct {
		name   string
		method string
		minor  int
		length int64
		hdr    http.Header
		want   bool
	}{
		{"websocket", "GET", 1, 0, http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"tokens in lists, any case", "GET", 1, 0, http.Header{"Connection": {"keep-alive, UPGRADE"}, "Upgrade": {"foo/2, WebSocket"}}, true},
		{"no connection token", "GET", 1, 0, http.Header{"Upgrade": {"websocket"}}, false},
		{"h2c", "GET", 1, 0, http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}}, false},
		{"not GET (RFC 6455 section 4.1)", "POST", 1, 0, http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, false},
		{"HTTP/1.0", "GET", 0, 0, http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, false},
		{"with a body", "GET", 1, 3, http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, false},
	} {
		r := &http.Request{Method: c.method, ProtoMajor: 1, ProtoMinor: c.minor, ContentLength: c.length, Header: c.hdr}
		if got := webSocketUpgrade(r); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSwitchingHead(t *testing.T) {
	got := string(switchingHead(http.Header{
		"Upgrade":              {"websocket"},
		"Connection":           {"Upgrade"},
		"Sec-Websocket-Accept": {"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
		"X-Bad":                {"a\r\nInjected: 1"},
	}))
	want := "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
		"Upgrade: websocket\r\nX-Bad: a  Injected: 1\r\n\r\n"
	if got != want {
		t.Errorf("head:\n%q\nwant\n%q", got, want)
	}
}
