package engine

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/xdpnet/xdpnet/internal/testutil"
)

// A server of weight 0 takes no requests but stays health-checked; with
// every server at weight 0 the backend answers 503.
func TestWeightZeroDrains(t *testing.T) {
	cert, roots := labCert(t)
	os := loopOrigins(t, cert, 2, "")
	withWeights := func(w0, w1 string) string {
		servers := fmt.Sprintf("      - {name: o0, address: %q%s}\n      - {name: o1, address: %q%s}\n", os[0].Addr, w0, os[1].Addr, w1)
		return strings.Replace(baseConfig("http", os, ""), serverList(os), servers, 1)
	}
	e := loopEngine(t, roots, withWeights(", weight: 0", "")) // o1: the default weight
	url := "http://" + e.FrontendAddr("fe").String() + "/"
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Origin")
	}
	for range 20 {
		if code, o := get(); code != 200 || o != "o1" {
			t.Fatalf("status %d from %q, want 200 from o1 (o0 is drained)", code, o)
		}
	}
	// Health checks are GET /healthz requests to the drained origin too.
	testutil.WaitFor(t, "health checks of the drained server", func() bool { return os[0].Stats().Requests >= 2 })
	if st := e.Stats(); st.Servers != 2 || st.ServersUp != 2 {
		t.Errorf("servers %d, up %d; want the drained one known and up", st.Servers, st.ServersUp)
	}

	e = loopEngine(t, roots, withWeights(", weight: 0", ", weight: 0"))
	url = "http://" + e.FrontendAddr("fe").String() + "/"
	if code, _ := get(); code != http.StatusServiceUnavailable {
		t.Errorf("every server drained: status %d, want 503", code)
	}
}
