package engine_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/testutil"
)

// TestLabDrainCountsWhatItCuts: a drain whose deadline passes while curl
// downloads slowly from nginx through the engine cuts that download,
// counts it (xdpnet_drain_cut_requests_total) and says so; the requests
// that finished before are not counted.
func TestLabDrainCountsWhatItCuts(t *testing.T) {
	t.Parallel()
	f := tcpLab(t, nginxHTTP1, "")
	randomFile(t, f, "large", 16<<20)
	for range 4 {
		if code, _ := exchange(t, f.env.HTTPClient(1, false), http.MethodGet, f.url(), nil); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	startProc(t, f.env.Lab.Client, nil, "curl", "-sS", "-m", "60", "--limit-rate", "100K", "-o", "/dev/null", f.env.FrontendURL("http")+"/large")
	testutil.WaitFor(t, "the download in flight", func() bool { return f.env.Engine.Stats().Engine.Payload.InUse == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := f.env.Engine.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("drain with a download in flight past its deadline: %v, want a deadline error", err)
	}
	if n := f.env.Engine.Stats().Engine.DrainCutRequests; n != 1 {
		t.Errorf("%d requests counted as cut by the drain, want 1 (the download)", n)
	}
}
