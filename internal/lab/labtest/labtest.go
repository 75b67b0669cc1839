package labtest

import (
	"testing"

	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/privtest"
)

// New builds a Lab for a privileged test: it skips (or, under CI, fails)
// t unless running as root, fails t if the Lab cannot be built, and closes
// the Lab when t ends.
func New(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	privtest.RequireRoot(t)
	l, err := lab.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
	})
	return l
}
