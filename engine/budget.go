package engine

import (
	"fmt"

	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/engine/config"
)

// newPayloadPool makes the engine's payload buffer pool: one size class of
// config.PayloadBufferSize, bounded by the payload allowance of
// buffers.memory (what the UMEM leaves). Its shared ring holds every buffer
// the allowance allows (up to 64Ki), so that a load that drops leaves its
// buffers pooled for the next one rather than to the GC.
func (e *Engine) newPayloadPool(cfg *config.Config) error {
	limit := cfg.PayloadMemory()
	p, err := bufring.NewBytePool(bufring.ByteConfig{
		Sizes:  []int{config.PayloadBufferSize},
		Shared: int(min(limit/config.PayloadBufferSize, 1<<16)),
		Limit:  limit,
	})
	if err != nil {
		return fmt.Errorf("engine: payload buffers: %w", err)
	}
	e.fenv.Payload, e.fenv.PayloadWait = p, cfg.Buffers.Wait.D()
	return nil
}
