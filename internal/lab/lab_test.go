package lab_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/privtest"
	"golang.org/x/sys/unix"
)

func TestOptionsNormalize(t *testing.T) {
	var o lab.Options
	if err := o.Normalize(); err != nil {
		t.Fatal(err)
	}
	if o.Queues != 1 || o.Clients != 1 || o.Servers != 1 || o.MTU != 1500 {
		t.Fatalf("defaults: %+v", o)
	}
	for _, bad := range []lab.Options{{Queues: -1}, {Queues: lab.MaxQueues + 1}, {Servers: lab.MaxServers + 1}, {Clients: -2}} {
		if err := bad.Normalize(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestCreatorPID(t *testing.T) {
	for name, want := range map[string]int{"xdpn-12-3-client": 12, "xdpn-7-1-engine": 7, "xdpn-x-1-a": 0, "other-1-1-a": 0, "xdpn-0-1-a": 0} {
		pid, ok := lab.CreatorPID(name)
		if ok != (want != 0) || pid != want {
			t.Errorf("%s: got %d %v, want %d", name, pid, ok, want)
		}
	}
}

func TestAddressPlan(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{Clients: 2, Servers: 3, EngineKernelAddrs: true})
	c, b := l.ClientLink, l.BackendLink
	want := func(got []netip.Addr, s ...string) {
		t.Helper()
		if fmt.Sprint(got) != "["+strings.Join(s, " ")+"]" {
			t.Errorf("got %v, want %v", got, s)
		}
	}
	want(c.PeerAddrs, "198.18.1.2", "198.18.1.3", "2001:2:0:1::2", "2001:2:0:1::3")
	want(b.PeerV4(), "198.18.2.10", "198.18.2.11", "198.18.2.12")
	want(b.PeerV6(), "2001:2:0:2::10", "2001:2:0:2::11", "2001:2:0:2::12")
	want([]netip.Addr{c.EngineV4, c.EngineV6, c.KernelV4, c.KernelV6, b.EngineV4, b.EngineV6},
		"198.18.1.1", "2001:2:0:1::1", "198.18.1.254", "2001:2:0:1::fe", "198.18.2.1", "2001:2:0:2::1")
	for _, n := range []*lab.NS{l.Client, l.Engine, l.Backend} {
		if _, err := os.Stat(n.Path()); err != nil {
			t.Errorf("namespace not visible under %s: %v", lab.NetnsDir, err)
		}
	}
}

// TestPeerRoutesThroughEngine sends UDP from the client peer to a backend
// server and captures it on the engine's veth: the route via the engine's .1
// and its static neighbour entry put the engine's MAC on the very first
// frame, and with TX checksum offload off the UDP checksum is complete.
func TestPeerRoutesThroughEngine(t *testing.T) {
	t.Parallel() // its own lab namespaces
	for _, csum := range []bool{false, true} {
		t.Run(fmt.Sprintf("peer-tx-csum=%v", csum), func(t *testing.T) {
			l := labtest.New(t, lab.Options{PeerTxChecksum: csum})
			for i, dst := range l.BackendLink.PeerAddrs {
				port := uint16(40000 + i)
				frame := captureUDP(t, l, func() error {
					return l.Client.Do(func() error {
						c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, port)))
						if err != nil {
							return err
						}
						defer c.Close()
						_, err = c.Write([]byte("lab payload"))
						return err
					})
				}, port)
				if got := net.HardwareAddr(frame[0:6]); got.String() != l.ClientLink.MAC.String() {
					t.Errorf("%s: dst MAC %s, want engine %s", dst, got, l.ClientLink.MAC)
				}
				if ok := udpChecksumOK(t, frame); ok == csum {
					t.Errorf("%s: checksum complete=%v with peer TX checksum offload=%v", dst, ok, csum)
				}
			}
		})
	}
}

// captureUDP runs send and returns the first frame to UDP port seen on the
// engine's client-side veth (other frames, such as IPv6 multicast
// listener reports, are skipped). Reads are bounded by a 5 s timeout.
func captureUDP(t *testing.T, l *lab.Lab, send func() error, port uint16) []byte {
	t.Helper()
	var fd int
	err := l.Engine.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.ClientLink.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((5 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if err := send(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for range 1000 {
		n, err := unix.Read(fd, buf)
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		f := buf[:n]
		if off, ok := udpOffset(f); ok && binary.BigEndian.Uint16(f[off+2:]) == port {
			return append([]byte(nil), f...)
		}
	}
	t.Fatal("capture: frame not seen")
	return nil
}

func udpOffset(f []byte) (int, bool) {
	if len(f) < 14 {
		return 0, false
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case unix.ETH_P_IP:
		if len(f) >= 34 && f[23] == unix.IPPROTO_UDP {
			off := 14 + int(f[14]&0xf)*4
			return off, len(f) >= off+8
		}
	case unix.ETH_P_IPV6:
		return 54, len(f) >= 62 && f[20] == unix.IPPROTO_UDP
	}
	return 0, false
}

// udpChecksumOK verifies the UDP checksum of an Ethernet frame.
func udpChecksumOK(t *testing.T, f []byte) bool {
	t.Helper()
	off, _ := udpOffset(f)
	udp := f[off : off+int(binary.BigEndian.Uint16(f[off+4:]))]
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	if binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_IP {
		add(f[26:34])
	} else {
		add(f[22:54])
	}
	sum += unix.IPPROTO_UDP + uint32(len(udp))
	add(udp)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestEngineKernelAddrs checks that the engine-ns kernel answers on its own
// addresses, over IPv4 and IPv6 at once (no DAD wait).
func TestEngineKernelAddrs(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{EngineKernelAddrs: true})
	for _, a := range []netip.Addr{l.ClientLink.KernelV4, l.ClientLink.KernelV6} {
		var srv *net.UDPConn
		err := l.Engine.Do(func() error {
			var err error
			srv, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 7000)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		err = l.Client.Do(func() error {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 7000)))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("hi"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		n, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "hi" {
			t.Fatalf("%s: read %q, %v", a, buf[:n], err)
		}
		if from.Addr().Unmap() != l.ClientLink.PeerAddrs[map[bool]int{false: 0, true: 1}[a.Is6()]] {
			t.Errorf("%s: from %s", a, from)
		}
	}
}

func TestMultiQueue(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{Queues: 4})
	h, err := netlink.NewHandleAt(l.Engine.Handle())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, link := range []lab.Link{l.ClientLink, l.BackendLink} {
		nl, err := h.LinkByIndex(link.Index)
		if err != nil {
			t.Fatal(err)
		}
		if a := nl.Attrs(); a.NumRxQueues != 4 || a.NumTxQueues != 4 || link.Queues != 4 {
			t.Errorf("%s: rx %d tx %d queues, Link.Queues %d; want 4", link.Name, a.NumRxQueues, a.NumTxQueues, link.Queues)
		}
	}
}

// TestOffloadSwitches reads back the TX checksum and GRO settings.
func TestOffloadSwitches(t *testing.T) {
	t.Parallel() // its own lab namespaces
	for _, o := range []lab.Options{{}, {PeerTxChecksum: true, PeerGRO: true, EngineGRO: true, EngineNoTxChecksum: true}} {
		l := labtest.New(t, o)
		for _, c := range []struct {
			ns   *lab.NS
			dev  string
			cmd  uint32
			want bool
		}{
			{l.Client, lab.PeerIf, unix.ETHTOOL_GTXCSUM, o.PeerTxChecksum},
			{l.Backend, lab.PeerIf, unix.ETHTOOL_GTXCSUM, o.PeerTxChecksum},
			{l.Client, lab.PeerIf, unix.ETHTOOL_GGRO, o.PeerGRO},
			{l.Engine, lab.EngineClientIf, unix.ETHTOOL_GGRO, o.EngineGRO},
			{l.Engine, lab.EngineBackendIf, unix.ETHTOOL_GGRO, o.EngineGRO},
			{l.Engine, lab.EngineClientIf, unix.ETHTOOL_GTXCSUM, !o.EngineNoTxChecksum},
			{l.Engine, lab.EngineBackendIf, unix.ETHTOOL_GTXCSUM, !o.EngineNoTxChecksum},
		} {
			var got bool
			if err := c.ns.Do(func() (err error) { got, err = lab.GetFeature(c.dev, c.cmd); return err }); err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("%+v: %s in %s: ethtool %#x = %v, want %v", o, c.dev, c.ns.Name, c.cmd, got, c.want)
			}
		}
	}
}

func TestDoPanics(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	before, _ := os.Readlink("/proc/thread-self/ns/net")
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want boom", r)
			}
		}()
		_ = l.Engine.Do(func() error { panic("boom") })
	}()
	if after, _ := os.Readlink("/proc/thread-self/ns/net"); after != before {
		t.Errorf("caller's thread moved from %s to %s", before, after)
	}
	// The namespace still works after the panic.
	if err := l.Engine.Do(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// Do racing with Close either runs inside the namespace or fails with
// net.ErrClosed; it never enters a closed handle (run under -race).
func TestDoRacesClose(t *testing.T) {
	privtest.RequireRoot(t)
	l, err := lab.New(lab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 8)
	for range cap(errc) {
		go func() {
			var err error
			for err == nil {
				err = l.Client.Do(func() error { return nil })
			}
			errc <- err
		}()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for range cap(errc) {
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Do after Close: %v, want net.ErrClosed", err)
		}
	}
}

func TestSetLinkUp(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	operUp := func() bool {
		var up bool
		err := l.Client.Do(func() error {
			nl, err := netlink.LinkByName(lab.PeerIf)
			if err != nil {
				return err
			}
			up = nl.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return up
	}
	if !operUp() {
		t.Fatal("peer has no carrier at start")
	}
	if err := l.SetLinkUp(l.ClientLink, false); err != nil {
		t.Fatal(err)
	}
	if operUp() {
		t.Error("peer kept carrier with the engine side down")
	}
	if err := l.SetLinkUp(l.ClientLink, true); err != nil {
		t.Fatal(err)
	}
	if !operUp() {
		t.Error("peer has no carrier after the engine side came back up")
	}
}

// TestDoAndStart checks that Do and Start run in the namespace and that the
// caller's thread is not left in it.
func TestDoAndStart(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	var st unix.Stat_t
	if err := unix.Stat(l.Client.Path(), &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	self := func() string {
		s, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := self()
	var inside string
	if err := l.Client.Do(func() error { inside = self(); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside != want {
		t.Errorf("inside Do: %s, want %s", inside, want)
	}
	if self() != before {
		t.Errorf("caller's thread moved to %s", self())
	}

	cmd := exec.Command("/bin/readlink", "/proc/self/ns/net")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Client.Start(cmd); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(line) != want {
		t.Errorf("started process in %q, want %s", line, want)
	}
}

// TestCloseRemovesEverything checks that Close removes the namespaces and
// kills processes started in them.
func TestCloseRemovesEverything(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	cmd := exec.Command("/bin/sleep", "60")
	if err := l.Backend.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("sleep survived Close")
	}
	for _, n := range []*lab.NS{l.Client, l.Engine, l.Backend} {
		if _, err := os.Stat(n.Path()); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", n.Path(), err)
		}
	}
	if err := l.Backend.Start(exec.Command("/bin/true")); err == nil {
		t.Error("Start after Close succeeded")
	}
}

const childEnv = "XDPNET_LAB_CHILD"

// TestLeftoversOfKilledRun re-executes the test binary as a child that builds
// a lab.Lab, starts a process in it and blocks; the test SIGKILLs the child: the
// process the child started dies with it, and the next New removes the
// child's namespaces.
func TestLeftoversOfKilledRun(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		leftoverChild()
		return
	}
	_ = labtest.New(t, lab.Options{}) // root check, and a lab of this process survives
	child := exec.Command(os.Args[0], "-test.run=^TestLeftoversOfKilledRun$", "-test.timeout=60s")
	child.Env = append(os.Environ(), childEnv+"=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	var grandchild int
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			child.Process.Kill()
			child.Wait()
			t.Fatalf("child: %v", err)
		}
		if _, err := fmt.Sscanf(line, "ready %d", &grandchild); err == nil {
			break
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	prefix := fmt.Sprintf("%s%d-", lab.NamePrefix, child.Process.Pid)
	if names := namesWithPrefix(t, prefix); len(names) != 3 {
		t.Fatalf("child's namespaces before cleanup: %v, want 3", names)
	}
	l2 := labtest.New(t, lab.Options{})
	if names := namesWithPrefix(t, prefix); len(names) != 0 {
		t.Errorf("leftovers after New: %v", names)
	}
	if _, err := os.Stat(l2.Client.Path()); err != nil {
		t.Errorf("own lab removed: %v", err)
	}
	// The grandchild died with its parent (Pdeathsig): gone, or a zombie
	// until init reaps it.
	// The signal is delivered as the child exits; allow it a bounded moment
	// to take effect.
	for i := 0; ; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", grandchild))
		if err != nil {
			break
		}
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
			break
		}
		if i == 200 {
			t.Errorf("process started in the killed run's lab still runs: %s", b)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func leftoverChild() {
	l, err := lab.New(lab.Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	cmd := exec.Command("/bin/sleep", "60")
	if err := l.Engine.Start(cmd); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Printf("ready %d\n", cmd.Process.Pid)
	time.Sleep(60 * time.Second) // killed by the parent long before
	os.Exit(1)
}

func namesWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(lab.NetnsDir, prefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
