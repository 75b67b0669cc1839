package shutdown

import (
	"context"
	"fmt"

	"github.com/xdpnet/xdpnet/mux"
)

// Finish ends a graceful Shutdown once no stream is left: it waits for idle
// (nil when already idle), then closes with mux.ErrGoingAway; if ctx ends
// first it closes hard and returns ctx's error.
func Finish(ctx context.Context, idle <-chan struct{}, closeWith func(error)) error {
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			closeWith(fmt.Errorf("mux: shutdown: %w", context.Cause(ctx)))
			return ctx.Err()
		}
	}
	closeWith(mux.ErrGoingAway)
	return nil
}
