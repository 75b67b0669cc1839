//go:build race

package stack

// txRace shrinks the TX tests under the race detector, which slows the
// data path about tenfold.
const txRace = true
