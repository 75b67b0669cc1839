package privtest

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
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

// SkipIfForbidden skips t, also under CI, when err says the sandbox
// forbade an operation to root (EPERM); see the package documentation. Any
// other non-nil error is left to the caller.
func SkipIfForbidden(t testing.TB, err error) {
	t.Helper()
	if err != nil && errors.Is(err, unix.EPERM) {
		t.Skipf("the sandbox forbids this to root (EPERM), not a kernel or code fault: %v", err)
	}
}
