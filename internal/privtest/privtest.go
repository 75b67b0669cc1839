package privtest

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// InCI reports whether the tests run under CI (CI=true in the environment).
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireRoot skips (or, in CI, fails) t unless the process runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		t.Fatal("privileged test needs root, and CI=true forbids skipping it")
	}
	t.Skip("privileged test: run as root (make test does so when it can)")
}

// SkipIfNotSupported skips t when err says a kernel or NIC feature is absent
// (it wraps ebpf.ErrNotSupported, which every package here wraps for that).
// Under CI such an error fails the test. Any other non-nil error fails it.
func SkipIfNotSupported(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ebpf.ErrNotSupported) && !InCI() {
		t.Skipf("feature not supported here: %v", err)
	}
	t.Fatal(err)
}
