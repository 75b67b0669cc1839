package engine_test

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(holderEnv); spec != "" { // BenchmarkIdleConnMemory's holder
		os.Exit(holdIdle(spec))
	}
	// netstack UDP sockets have no receive-buffer knob; quic-go would warn
	// about it once per process.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	os.Exit(m.Run())
}
