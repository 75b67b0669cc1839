//go:build !race

package stack

const txRace = false
