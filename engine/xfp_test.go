package engine_test

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// TestForwardedProto: the backend (caddy, which echoes the header) gets
// X-Forwarded-Proto with the scheme the client used: http from the http
// frontend (curl, also when curl sends its own "https"), https from the
// https frontend (curl over h2 and HTTP/1.1) and the h3 one (quic-go).
func TestForwardedProto(t *testing.T) {
	t.Parallel()
	k := caddyOrigin(map[string]any{
		"match":  []any{map[string]any{"path": []string{"/xfp"}}},
		"handle": []any{map[string]any{"handler": "static_response", "body": "{http.request.header.X-Forwarded-Proto}"}},
	})
	f, clients := allFrontendsLab(t, k, "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{f.env.FrontendURL("http") + "/xfp"}, "http"},
		{[]string{"-H", "X-Forwarded-Proto: https", f.env.FrontendURL("http") + "/xfp"}, "http"},
		{[]string{"-k", "--http2", f.env.FrontendURL("https") + "/xfp"}, "https"},
		{[]string{"-k", "--http1.1", f.env.FrontendURL("https") + "/xfp"}, "https"},
	} {
		out, err := runIn(t, f.env.StartClient, 30*time.Second, "curl", append([]string{"-sS", "-m", "10"}, c.args...)...)
		if err != nil || out != c.want {
			t.Errorf("curl %v: %q, %v; the backend got X-Forwarded-Proto %q, want %q", c.args, out, err, out, c.want)
		}
	}
	h3 := clients[len(clients)-1]
	resp, err := h3.c.Get(h3.base + "/xfp")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "https" {
		t.Errorf("HTTP/3: status %d, X-Forwarded-Proto %q; want https", resp.StatusCode, b)
	}
}
