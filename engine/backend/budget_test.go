package backend

import (
	"context"
	"fmt"
	"net/http"
	"testing"
)

// A dial without room in the memory budget is the engine's state, not the
// server's: it neither backs the server off nor counts against its
// health, whatever wraps it (a connect timeout of the server's own does),
// and a tunnel refused for it is counted with its own reason.
func TestBudgetNotServerCaused(t *testing.T) {
	budget := fmt.Errorf("reuse: dial origins/a: %w", fmt.Errorf("connect a: %w: %w", fmt.Errorf("%w: no room", ErrBudget), context.DeadlineExceeded))
	if serverCaused(budget) {
		t.Errorf("%v counted as the server's failure", budget)
	}
	if timeout := fmt.Errorf("connect a: %w", context.DeadlineExceeded); !serverCaused(timeout) {
		t.Errorf("%v not counted as the server's failure", timeout)
	}
	if f := Classify(budget); f.Status != http.StatusServiceUnavailable || f.Reason != "memory budget spent" {
		t.Errorf("classified %+v", f)
	}
}
