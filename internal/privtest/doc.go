// Package privtest decides whether a privileged test may run.
//
// Outside CI a test that needs root or a kernel feature skips with a message
// saying why. Under CI=true the same test fails instead: CI runs as root on a
// kernel with AF_XDP, so a skip there would hide a broken test.
//
// One exception skips in CI too: an operation the machine's sandbox forbids
// to root (EPERM from a seccomp filter or LSM, as for the XDP live-frames
// BPF_PROG_RUN on some hosts), which no code change can make pass. Callers
// use SkipIfForbidden only around that one operation, so an EPERM anywhere
// else still fails.
//
// It owns that decision only and knows nothing of what the tests do.
package privtest
