package engine_test

// A server marked down by its health checks keeps the transfers that its
// connections still carry (engine/backend markDown closes only silent
// connections): a 50 MiB download through the gateway outlives the mark.

import (
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
)

// TestLabDownloadSurvivesMarkDown starts a 50 MiB download through the
// http frontend from nginx (h2 and http1 backends) and caddy (h3), stops
// reading after 1 MiB, and makes the origin's health endpoint answer 404
// (its file removed): the fault suite's checks (every 500ms, fall 2) mark
// the server down while the transfer is parked behind flow control. The
// connection answers the gateway's PING (HTTP/2, QUIC) or is still open
// (HTTP/1.1), so it stays; the client then reads the rest, which must be
// the file byte for byte.
func TestLabDownloadSurvivesMarkDown(t *testing.T) {
	for _, k := range []originKind{nginxH2, nginxHTTP1, caddy} {
		name := k.proto
		if name == "" {
			name = "h3"
		}
		t.Run(k.name+"/"+name, func(t *testing.T) {
			// Only the request timeout is loosened: it covers the
			// upload, not this download, but a 2m one keeps a slow
			// -race run clear of it.
			f := startFaultLab(t, faultOpts{kinds: []originKind{k}, edit: []string{"request: 10s", "request: 2m"}})
			if _, ok := waitServing(f.env, f.url(), time.Now(), recoverWithin); !ok {
				t.Fatalf("the engine did not serve %s", k.name)
			}
			want := randomFile(t, f, "fifty", 50<<20)
			server := func() bool { return f.env.Engine.Stats().Engine.Backends["origins"].Servers["s0"].Up }

			cl := f.env.HTTPClient(1, false)
			cl.Timeout = 2 * time.Minute
			defer cl.CloseIdleConnections()
			resp, err := cl.Get(f.env.FrontendURL("http") + "/fifty")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			h := sha256.New()
			if _, err := io.CopyN(h, resp.Body, 1<<20); err != nil {
				t.Fatalf("the first MiB: %v", err)
			}

			if err := os.Remove(filepath.Join(f.files.dir, "healthz")); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, "the server marked down by its health checks", func() bool { return !server() })
			// markDown probes the server's connections at once and closes
			// those silent for health_check.timeout (400ms). The client
			// keeps the transfer parked for three times that: a gateway
			// that closed this connection has done it by then.
			<-time.After(1200 * time.Millisecond)
			if server() {
				t.Fatal("the server came back up while its health endpoint was gone")
			}
			n, err := io.Copy(h, resp.Body)
			if err != nil {
				t.Fatalf("the transfer broke after %d bytes once its server was marked down: %v", 1<<20+n, err)
			}
			if got, sum := h.Sum(nil), sha256.Sum256(want); 1<<20+n != int64(len(want)) || string(got) != string(sum[:]) {
				t.Fatalf("got %d bytes (sha256 %x), want %d (sha256 %x)", 1<<20+n, got, len(want), sum)
			}
			if server() {
				t.Error("the server is up again without its health endpoint")
			}
			t.Logf("FIGURES markdown origin=%s proto=%s body=%d bytes intact across the mark-down", k.name, name, 1<<20+n)
		})
	}
}
