// Package labtest builds internal/lab topologies for tests.
//
// It owns the decision to skip or fail a privileged test (through
// internal/privtest) and the lab's cleanup when the test ends, so that
// package lab, which the xdpnet binary links for its demo, links no test
// code. It must not know what a test does in the lab: addresses, engines,
// traffic and assertions are the caller's.
package labtest
