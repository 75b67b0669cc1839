//go:build bufring_debug

package bufring

// debug enables the ownership checks of tracker (see debug_off.go).
const debug = true
