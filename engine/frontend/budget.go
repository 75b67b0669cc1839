package frontend

import (
	"context"
	"net/http"

	"github.com/xdpnet/xdpnet/engine/config"
)

// payloadBuffer takes the request's payload buffer from the engine's pool,
// waiting up to buffers.wait (in the pool's FIFO queue) when the memory
// budget is spent. The caller releases it to e.Payload.
func (h *httpProxy) payloadBuffer(ctx context.Context) ([]byte, error) {
	e := h.fe.env
	if b, ok := e.Payload.TryAcquire(config.PayloadBufferSize); ok {
		return b, nil // no wait, so no deadline (a timer) to make
	}
	ctx, cancel := context.WithTimeout(ctx, e.PayloadWait)
	defer cancel()
	return e.Payload.Acquire(ctx, config.PayloadBufferSize)
}

// noBuffer answers a request that got no payload buffer, or whose backend
// connection got no reservation in the memory budget (backend.ErrBudget):
// 499 when the client left meanwhile, else 503 with Retry-After (RFC 9110
// §15.6.4) and a Proxy-Status naming the cause (RFC 9209). The result
// label no_buffer counts them in xdpnet_requests_total; the pool's
// wait_failures too.
func (h *httpProxy) noBuffer(w http.ResponseWriter, r *http.Request, err error) (int, string) {
	if r.Context().Err() != nil {
		return 499, "client_gone"
	}
	h.fe.env.Log.Debug("request refused: memory budget spent", "frontend", h.fe.cfg.Name, "err", err)
	w.Header().Set("Proxy-Status", `xdpnet; error=proxy_internal_error; details="memory budget spent (buffers.memory)"`)
	w.Header().Set("Retry-After", "1")
	http.Error(w, "503 Service Unavailable: memory budget spent", http.StatusServiceUnavailable)
	return http.StatusServiceUnavailable, "no_buffer"
}
