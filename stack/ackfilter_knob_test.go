package stack

import "os"

// XDPNET_ACKFILTER=1 switches the transmit ACK filter on in this test
// binary, for same-binary A/B runs of the benchmarks
// (bench/stack-ackfilter.md).
func init() {
	if os.Getenv("XDPNET_ACKFILTER") == "1" {
		ackFilterOn.Store(true)
	}
}
