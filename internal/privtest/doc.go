// Package privtest decides whether a privileged test may run.
//
// Outside CI a test that needs root or a kernel feature skips with a message
// saying why. Under CI=true the same test fails instead: CI runs as root on a
// kernel with AF_XDP, so a skip there would hide a broken test.
//
// It owns that decision only and knows nothing of what the tests do.
package privtest
