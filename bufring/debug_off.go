//go:build !bufring_debug

package bufring

// debug enables the ownership checks of tracker. It is a constant so that the
// checks compile away in normal builds; build with -tags bufring_debug to turn
// them on.
const debug = false
