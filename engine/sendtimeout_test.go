package engine_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
)

// TestFaultSlowReader: clients that stop reading a large response (curl
// with --limit-rate over HTTP/1.1, h2c, HTTPS h2 and HTTPS HTTP/1.1, and
// quic-go's HTTP/3 client that reads nothing) are cut by the frontends'
// timeouts.send, counted, and give back their payload buffers and
// requests in flight, while a download read at full speed through the
// same frontends arrives whole. Before timeouts.send such a client held
// its connection, payload buffer and backend stream for ever.
func TestFaultSlowReader(t *testing.T) {
	t.Parallel()
	f, clients := allFrontendsLab(t, nginxHTTP1, ", timeouts: {send: 1s}")
	const size = 16 << 20
	want := randomFile(t, f, "large", size)

	// Read at full speed: a moving download is never cut.
	for _, fe := range clients {
		code, got := exchange(t, fe.c, http.MethodGet, fe.base+"/large", nil)
		if code != http.StatusOK {
			t.Fatalf("%s: status %d", fe.name, code)
		}
		sameBody(t, fe.name+" full-speed download", got, want)
	}

	sendCuts := func(frontend string) uint64 {
		fs := f.env.Engine.Stats().Engine.Frontends[frontend]
		if fs == nil {
			return 0
		}
		return fs.ClientTimeouts["send"]
	}
	if n := sendCuts("http") + sendCuts("https") + sendCuts("h3"); n != 0 {
		t.Fatalf("%d send timeouts counted for clients that read at full speed", n)
	}

	// curl reads 2 KB a second: each 32 KiB write waits for it longer
	// than 1s once the TCP and flow-control windows are full.
	http0, https0 := sendCuts("http"), sendCuts("https")
	for _, args := range [][]string{
		{f.env.FrontendURL("http") + "/large"},
		{"--http2-prior-knowledge", f.env.FrontendURL("http") + "/large"},
		{"-k", "--http2", f.env.FrontendURL("https") + "/large"},
		{"-k", "--http1.1", f.env.FrontendURL("https") + "/large"},
	} {
		startProc(t, f.env.Lab.Client, nil, "curl", append([]string{"-sS", "-m", "120", "--limit-rate", "2K", "-o", "/dev/null"}, args...)...)
	}
	// quic-go's HTTP/3 client takes the headers and one chunk, then
	// stops reading.
	h3c := clients[len(clients)-1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h3c.base+"/large", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h3c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}

	// Bounded by testutil's timeout: each cut comes within a second or
	// two of the client's windows filling.
	if !testutil.Eventually(func() bool {
		return sendCuts("http") >= http0+2 && sendCuts("https") >= https0+2 && sendCuts("h3") >= 1
	}) {
		t.Fatalf("send timeouts after %v: http %d (want 2), https %d (want 2), h3 %d (want 1)", testutil.Timeout,
			sendCuts("http")-http0, sendCuts("https")-https0, sendCuts("h3"))
	}
	testutil.WaitFor(t, "payload buffers and requests back", func() bool {
		st := f.env.Engine.Stats().Engine
		return st.Payload.InUse == 0 && st.Frontends["http"].Requests["send_timeout"]["2xx"] >= 2
	})
	// The h3 client's stream was reset: its body ends in an error, not
	// a clean EOF.
	cancelled := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		cancelled <- err
	}()
	select {
	case err := <-cancelled:
		if err == nil {
			t.Error("the HTTP/3 body cut by timeouts.send ended cleanly")
		}
	case <-time.After(testutil.Timeout):
		t.Error("the HTTP/3 body cut by timeouts.send did not end")
		resp.Body.Close()
		<-cancelled
	}
	t.Logf("send timeouts: http %d, https %d, h3 %d", sendCuts("http"), sendCuts("https"), sendCuts("h3"))
}
