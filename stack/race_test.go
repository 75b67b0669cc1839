//go:build race

package stack_test

// raceEnabled shrinks transfers under the race detector, which slows the
// data path about tenfold.
const raceEnabled = true
