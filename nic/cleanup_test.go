package nic

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
)

// holder is what a port holds in the kernel besides memory: the steering
// program attached to the interface, its maps, and the AF_XDP socket.
type holder struct {
	prog ebpf.ProgramID
	maps []ebpf.MapID
}

// attachedXDP returns the ID of the XDP program attached to ifindex (0 for
// none), in the calling thread's namespace.
func attachedXDP(ifindex int) (ebpf.ProgramID, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return 0, err
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return ebpf.ProgramID(x.ProgId), nil
	}
	return 0, nil
}

// holderOf finds the program attached to ifindex and its maps.
func holderOf(ifindex int) (holder, error) {
	id, err := attachedXDP(ifindex)
	if err != nil || id == 0 {
		return holder{}, fmt.Errorf("no XDP program on ifindex %d (%v)", ifindex, err)
	}
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return holder{}, err
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return holder{}, err
	}
	maps, _ := info.MapIDs()
	return holder{prog: id, maps: maps}, nil
}

// xdpSockets returns the number of AF_XDP sockets in the calling thread's
// network namespace (the XDP line of /proc/net/protocols is per namespace).
func xdpSockets() (int, error) {
	b, err := os.ReadFile("/proc/thread-self/net/protocols")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "XDP" {
			return strconv.Atoi(f[2])
		}
	}
	return 0, errors.New("no XDP line in /proc/net/protocols")
}

// checkReleased waits (bounded) until the kernel has freed everything h
// names and the engine namespace holds no AF_XDP socket, then checks that a
// new port can bind the same queue. Releases are asynchronous in the kernel
// (deferred work, RCU), hence the wait.
func checkReleased(t *testing.T, l *lab.Lab, lk lab.Link, h holder) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		left = left[:0]
		if p, err := ebpf.NewProgramFromID(h.prog); err == nil {
			p.Close()
			left = append(left, fmt.Sprintf("program %d", h.prog))
		}
		for _, id := range h.maps {
			if m, err := ebpf.NewMapFromID(id); err == nil {
				m.Close()
				left = append(left, fmt.Sprintf("map %d", id))
			}
		}
		err := l.Engine.Do(func() error {
			if id, err := attachedXDP(lk.Index); err != nil || id != 0 {
				left = append(left, fmt.Sprintf("XDP program %d attached (%v)", id, err))
			}
			if n, err := xdpSockets(); err != nil || n != 0 {
				left = append(left, fmt.Sprintf("%d AF_XDP sockets (%v)", n, err))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Fatalf("left behind: %s", strings.Join(left, ", "))
	}
	err := l.Engine.Do(func() error {
		p, err := Open(Config{Ifindex: lk.Index, ZeroCopy: ZeroCopyOff})
		if err != nil {
			return fmt.Errorf("rebinding the queue: %w", err)
		}
		st, _ := p.Stats()
		t.Logf("queue rebound after %d EBUSY retries", st.BindRetries)
		return p.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCloseReleasesEverything: after Port.Close and Steering.Close no
// program, map or socket is left, and the queue binds again.
func TestCloseReleasesEverything(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	s, err := newSteering(l, lk)
	if err != nil {
		t.Fatal(err)
	}
	var p *Port
	var h holder
	err = l.Engine.Do(func() (err error) {
		if p, err = Open(Config{Ifindex: lk.Index, Map: s, ZeroCopy: ZeroCopyOff}); err != nil {
			return err
		}
		h, err = holderOf(lk.Index)
		return err
	})
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	if err := errors.Join(p.Close(), s.Close()); err != nil {
		t.Fatal(err)
	}
	checkReleased(t, l, lk, h)
}

const childEnv = "NIC_TEST_HOLDER_IFINDEX"

// TestKilledHolderReleasesEverything re-executes the test binary as a child
// in the engine namespace that attaches the steering program and opens a
// port, kills it with SIGKILL, and checks that the kernel released the
// program, its maps and the socket.
func TestKilledHolderReleasesEverything(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	cmd := exec.Command(os.Args[0], "-test.run=^TestPortHolderChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", childEnv, lk.Index))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // never closed before the kill: the child blocks on it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := l.Engine.Start(cmd); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "HOLDING "); ok {
				ready <- line
			}
		}
		close(ready)
	}()
	var line string
	select {
	case l, ok := <-ready:
		if !ok {
			cmd.Process.Kill()
			t.Fatalf("child exited before holding a port: %v", cmd.Wait())
		}
		line = l
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child did not report holding a port within 30s")
	}
	var h holder
	for i, f := range strings.Fields(line) {
		id, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			t.Fatalf("child said %q", line)
		}
		if i == 0 {
			h.prog = ebpf.ProgramID(id)
		} else {
			h.maps = append(h.maps, ebpf.MapID(id))
		}
	}
	if len(h.maps) == 0 {
		t.Fatalf("child said %q: no maps", line)
	}
	if err := l.Engine.Do(func() error {
		// One port: its RX socket and its TX socket.
		if n, err := xdpSockets(); err != nil || n != 2 {
			return fmt.Errorf("%d AF_XDP sockets while the child holds one port (%v)", n, err)
		}
		return nil
	}); err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // "signal: killed"
	checkReleased(t, l, lk, h)
}

// TestPortHolderChild is the child of TestKilledHolderReleasesEverything; it
// only runs with childEnv set, already inside the engine namespace.
func TestPortHolderChild(t *testing.T) {
	v := os.Getenv(childEnv)
	if v == "" {
		t.Skip("helper process of TestKilledHolderReleasesEverything")
	}
	ifindex, err := strconv.Atoi(v)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bpf.LoadSteering(bpf.SteeringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Attach(ifindex, bpf.ModeNative); err != nil {
		t.Fatal(err)
	}
	p, err := Open(Config{Ifindex: ifindex, Map: s, ZeroCopy: ZeroCopyOff})
	if err != nil {
		t.Fatal(err)
	}
	h, err := holderOf(ifindex)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{strconv.FormatUint(uint64(h.prog), 10)}
	for _, m := range h.maps {
		ids = append(ids, strconv.FormatUint(uint64(m), 10))
	}
	fmt.Println("HOLDING " + strings.Join(ids, " "))
	// Hold until killed; the parent never writes. Bounded in case the
	// parent dies without killing us (Pdeathsig covers that too).
	done := make(chan struct{})
	go func() { _, _ = os.Stdin.Read(make([]byte, 1)); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
	}
	p.Close()
	s.Close()
}

// retrySignal is a slog handler that reports the port's first bind retry.
type retrySignal struct{ retried chan struct{} }

func (r retrySignal) Enabled(context.Context, slog.Level) bool { return true }
func (r retrySignal) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r retrySignal) WithGroup(string) slog.Handler            { return r }
func (r retrySignal) Handle(_ context.Context, rec slog.Record) error {
	if strings.Contains(rec.Message, "retrying bind") {
		select {
		case r.retried <- struct{}{}:
		default:
		}
	}
	return nil
}

// TestBindRetriesWhileQueueBusy: a queue held by another socket makes Open
// fail with EBUSY once its bounded retries run out, and an Open retrying
// when the holder closes binds without error.
func TestBindRetriesWhileQueueBusy(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	open := func(cfg Config) (p *Port, err error) {
		cfg.Ifindex, cfg.ZeroCopy = lk.Index, ZeroCopyOff
		err = l.Engine.Do(func() (err error) {
			p, err = Open(cfg)
			return err
		})
		return p, err
	}
	holder, err := open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := open(Config{BindRetry: 20 * time.Millisecond}); !errors.Is(err, unix.EBUSY) {
		if p != nil {
			p.Close()
		}
		holder.Close()
		t.Fatalf("Open on a held queue: %v, want EBUSY", err)
	}

	sig := retrySignal{make(chan struct{}, 1)}
	type result struct {
		p   *Port
		err error
	}
	res := make(chan result, 1)
	go func() {
		p, err := open(Config{BindRetry: time.Minute, Logger: slog.New(sig)})
		res <- result{p, err}
	}()
	var r result
	select {
	case <-sig.retried: // the Open found the queue busy and is retrying
		if err := holder.Close(); err != nil {
			t.Fatal(err)
		}
		r = <-res
	case r = <-res:
		holder.Close()
		if r.p != nil {
			r.p.Close()
		}
		t.Fatalf("Open on a held queue returned without retrying: %v", r.err)
	}
	if r.err != nil {
		t.Fatalf("Open retrying while the holder closed: %v", r.err)
	}
	defer r.p.Close()
	if st, _ := r.p.Stats(); st.BindRetries == 0 {
		t.Error("BindRetries not counted")
	}
}

// TestOpenErrorsLeaveNothing: a queue the device does not have and invalid
// configurations fail with errors, and the failed Opens leave no socket.
func TestOpenErrorsLeaveNothing(t *testing.T) {
	t.Parallel() // its own lab namespaces
	l := labtest.New(t, lab.Options{})
	lk := l.ClientLink
	err := l.Engine.Do(func() error {
		for _, cfg := range []Config{
			{Ifindex: lk.Index, Queue: 5},                 // the veth has one queue
			{Ifindex: lk.Index, FrameSize: 3000},          // not a power of two
			{Ifindex: lk.Index, RXSize: 1000},             // not a power of two
			{Ifindex: lk.Index, Frames: 16, FillSize: 64}, // too few frames to leave any to transmit
			{Ifindex: 0},
		} {
			p, err := Open(cfg)
			if err == nil {
				p.Close()
				return fmt.Errorf("Open(%+v) succeeded", cfg)
			}
			if cfg.Queue == 5 && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("Open on a missing queue: %w, want EINVAL", err)
			}
		}
		if n, err := xdpSockets(); err != nil || n != 0 {
			return fmt.Errorf("%d AF_XDP sockets left after failed Opens (%v)", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
