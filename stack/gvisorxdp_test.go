package stack_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// gvisorXDPLoop is the frame of gVisor's link/xdp receive loop.
const gvisorXDPLoop = "gvisor.dev/gvisor/pkg/tcpip/link/xdp.(*endpoint).dispatch("

// The benchmarks' gvisor-xdp server ends gVisor's receive loop before it
// closes the AF_XDP socket. Left running, the loop went on polling the
// socket's descriptor number and held whatever file took it next: when that
// was a later client's exec status pipe, BenchmarkTCPBulk hung in
// exec.Cmd.Start (see gvisorXDPLink).
func TestGVisorXDPEnvCloseEndsReceiveLoop(t *testing.T) {
	privtest.RequireRoot(t)
	t.Parallel()
	t.Run("echo", func(t *testing.T) {
		env := newGVisorXDPEnv(t, lab.Options{})
		dst := netip.AddrPortFrom(env.addr, 7)
		ln, err := env.listen(dst)
		if err != nil {
			t.Fatal(err)
		}
		testutil.Serve(t, ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
		// One echo through the endpoint, so that its loop has run.
		err = env.l.Client.Do(func() error {
			c, err := net.DialTimeout("tcp", dst.String(), testutil.Timeout)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(testutil.Timeout))
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
			_, err = io.ReadFull(c, make([]byte, 4))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := testutil.Goroutines(gvisorXDPLoop); n != 1 {
			t.Fatalf("%d gVisor link/xdp receive loops running, want 1", n)
		}
	})
	// The subtest's cleanups have run: the loop must be gone already, not
	// merely some time later.
	if n := testutil.Goroutines(gvisorXDPLoop); n != 0 {
		t.Fatalf("%d gVisor link/xdp receive loops still running after the server's cleanup", n)
	}
}
