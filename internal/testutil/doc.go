// Package testutil holds the helpers that the tests of several packages
// share: bounded waits (Eventually, WaitFor) and an accept loop (Serve).
//
// Only tests import it, so no binary links it or package testing. It must
// not know any xdpnet package: a helper that needs one belongs in that
// package's own tests (or its test fake, such as mux/muxtest).
package testutil
