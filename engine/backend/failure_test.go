package backend

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
)

// The TCP backends' socket errors, as a dial through net or the netstack
// wraps them, get their own status and RFC 9209 error type rather than
// "backend error".
func TestClassifySocketErrors(t *testing.T) {
	dial := func(errno syscall.Errno) error {
		return fmt.Errorf("connect 198.18.2.10:80: %w",
			&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)})
	}
	for _, tc := range []struct {
		err         error
		reason, typ string
	}{
		{dial(syscall.ECONNREFUSED), "connection refused", "connection_refused"},
		{dial(syscall.EHOSTUNREACH), "destination unreachable", "destination_ip_unroutable"},
		{dial(syscall.ENETUNREACH), "destination unreachable", "destination_ip_unroutable"},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), "connection reset", "connection_terminated"},
	} {
		f := Classify(tc.err)
		if f.Status != http.StatusBadGateway || f.Reason != tc.reason || f.ProxyStatus != tc.typ {
			t.Errorf("%v: classified %+v, want 502 %q %q", tc.err, f, tc.reason, tc.typ)
		}
	}
}
