package engine_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/privtest"
)

// stacks are the data planes every end-to-end test runs on: the AF_XDP
// netstack and the kernel-socket baseline, with the same proxy logic.
var stacks = []string{"xdp", "kernel"}

func startLab(t *testing.T, stack string, opts enginelab.Options) *enginelab.Env {
	t.Helper()
	privtest.RequireRoot(t)
	opts.Stack = stack
	opts.Admin = "127.0.0.1:0"
	if testing.Verbose() {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	env, err := enginelab.Start(opts)
	privtest.SkipIfNotSupported(t, err)
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return env
}

// get runs n GETs over conns concurrent keep-alive connections and returns
// how many failed (with the first error).
func get(t *testing.T, c *http.Client, url string, n, conns int) (failed int, first error) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range conns {
		wg.Go(func() {
			for range next {
				resp, err := c.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = &statusError{resp.StatusCode}
					}
				}
				if err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return failed, first
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

func TestLabHTTP(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			env := startLab(t, stack, enginelab.Options{})
			c := env.HTTPClient(4, false)
			const n = 300
			failed, err := get(t, c, env.FrontendURL("http")+"/bytes/1000", n, 4)
			if failed > 0 {
				t.Fatalf("%d of %d requests failed: %v", failed, n, err)
			}
			st := env.Engine.Stats()
			if st.Stack != map[string]string{"xdp": "xdp+netstack", "kernel": "kernel"}[stack] {
				t.Errorf("ran on stack %q", st.Stack)
			}
			t.Logf("%s: %v requests, %v backend connections opened, reuse %+v", st.Stack, st.RequestsOK, st.BackendConnsOpened, st.Reuse)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := env.Engine.Shutdown(ctx); err != nil {
				t.Error(err)
			}
			_ = strings.TrimSpace
		})
	}
}
