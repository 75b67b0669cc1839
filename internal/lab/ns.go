package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named namespaces are bind-mounted; it is the directory
// vishvananda/netns and iproute2 use.
const netnsDir = "/run/netns"

// namePrefix starts the name of every namespace a Lab creates.
const namePrefix = "xdpn-"

// NS is a named network namespace created by a Lab. Its methods are safe for
// concurrent use.
type NS struct {
	// Name is the namespace's name under /run/netns (for `ip netns exec`).
	Name string

	// handleMu lets close invalidate handle while Do calls that race with
	// it (a test tearing down under load) enter it or fail cleanly.
	handleMu sync.RWMutex
	handle   netns.NsHandle

	mu     sync.Mutex
	procs  []*exec.Cmd // started by Start; killed by close
	closed bool
}

// Path is the namespace's bind mount, usable with setns(2) or nsenter.
func (n *NS) Path() string { return filepath.Join(netnsDir, n.Name) }

// Do runs fn on a locked OS thread that has entered the namespace, and
// returns fn's error. Sockets fn opens stay in the namespace after Do
// returns; goroutines fn starts do not run in it (namespaces are per thread).
// Inside fn, netlink calls and /proc/sys/net follow the thread's namespace,
// but /proc/net is the process's: read /proc/thread-self/net instead.
//
// If the thread cannot return to its original namespace, it is never
// unlocked: the goroutine exits locked, and the Go runtime terminates the
// thread instead of reusing it with the wrong namespace. A panic in fn is
// re-raised in the caller's goroutine.
func (n *NS) Do(fn func() error) error {
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("lab: current netns: %w", err)}
			return
		}
		defer orig.Close()
		if err := n.enter(); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("lab: enter netns %s: %w", n.Name, err)}
			return
		}
		var r result
		func() {
			defer func() { r.panic = recover() }()
			r.err = fn()
		}()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			r.err = errors.Join(r.err, fmt.Errorf("lab: restore netns after %s (thread discarded): %w", n.Name, err))
			done <- r
			return
		}
		runtime.UnlockOSThread()
		done <- r
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// Start starts cmd inside the namespace: the child is forked from a thread
// that has entered it, so it inherits the namespace. Unless cmd.SysProcAttr
// is set, the child gets SIGKILL when the forking process dies, so a killed
// test leaves no process behind. The caller still owns cmd and must Wait for
// it; Lab.Close kills commands that are still running.
func (n *NS) Start(cmd *exec.Cmd) error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return fmt.Errorf("lab: start in %s: %w", n.Name, os.ErrClosed)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := n.Do(cmd.Start); err != nil {
		return fmt.Errorf("lab: start %s in %s: %w", cmd.Path, n.Name, err)
	}
	n.mu.Lock()
	n.procs = append(n.procs, cmd)
	n.mu.Unlock()
	return nil
}

// newNS creates and bind-mounts the named namespace name, leaving the calling
// process's namespaces untouched.
func newNS(name string) (*NS, error) {
	var h netns.NsHandle
	err := onFreshThread(func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		// NewNamed may have created the file before failing to mount it.
		_ = os.Remove(filepath.Join(netnsDir, name))
		return nil, fmt.Errorf("lab: create netns %s: %w", name, err)
	}
	return &NS{Name: name, handle: h}, nil
}

// onFreshThread runs fn, which may switch the thread's network namespace, on
// a locked thread and switches back afterwards (or discards the thread).
func onFreshThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(ferr, err) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// close kills the processes Start started that still run, releases the
// handle and removes the namespace's name. The kernel frees the namespace,
// and the veth pairs in it, once no process, thread or socket uses it.
// enter moves the calling, locked thread into the namespace; after close it
// fails with an error wrapping net.ErrClosed.
func (n *NS) enter() error {
	n.handleMu.RLock()
	defer n.handleMu.RUnlock()
	if !n.handle.IsOpen() {
		return fmt.Errorf("lab: netns %s closed: %w", n.Name, net.ErrClosed)
	}
	return netns.Set(n.handle)
}

func (n *NS) close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()

	for _, c := range procs {
		if c.ProcessState == nil {
			// ErrProcessDone when it has been waited for already: fine.
			_ = c.Process.Kill()
		}
	}
	var errs []error
	n.handleMu.Lock()
	if err := n.handle.Close(); err != nil {
		errs = append(errs, fmt.Errorf("lab: close netns %s handle: %w", n.Name, err))
	}
	n.handleMu.Unlock()
	if err := deleteNamed(n.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteNamed unmounts and removes a named namespace; an already removed one
// is not an error (two processes may clean the same leftover).
func deleteNamed(name string) error {
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lab: unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: remove %s: %w", p, err)
	}
	return nil
}

// creatorPID parses the pid out of a lab namespace name
// (xdpn-<pid>-<seq>-<role>).
func creatorPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, namePrefix)
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// processAlive reports whether pid exists. A recycled pid keeps a leftover
// alive until that process ends too, which errs on the safe side.
func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// removeLeftovers deletes the namespaces of lab runs whose creating process
// is dead and returns their names. Processes that run still may keep such a
// namespace alive after its name is gone; they are not killed here, since
// only a process that started them may end them: those NS.Start started
// died with their parent (Pdeathsig).
func removeLeftovers() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: list leftovers: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		pid, ok := creatorPID(e.Name())
		if !ok || processAlive(pid) {
			continue
		}
		if err := deleteNamed(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}
