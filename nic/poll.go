package nic

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Waiting in the Go runtime's poller rather than in ppoll(2): a goroutine
// parked there holds neither an OS thread nor a P, so going to sleep and
// waking up cost a goroutine switch instead of a thread hand-off (a thread
// blocked in a raw syscall keeps its M, sysmon retakes its P, and on return
// the thread has to find a P again).
//
// The poller is edge-triggered. That loses no wakeup here: the kernel calls
// sk_data_ready (EPOLLIN) each time it publishes RX descriptors, and the
// poller remembers an edge that arrives while nobody is parked, so the
// RX ring is checked inside the read callback, after the goroutine has
// armed its wait, and an edge between that check and parking makes the park
// return at once.

// openPoll registers a non-blocking duplicate of the socket with the
// runtime poller. O_NONBLOCK lands on the shared open file description,
// which the port's own syscalls do not mind: they all pass MSG_DONTWAIT or
// never block.
func (p *Port) openPoll() error {
	fd, err := unix.FcntlInt(uintptr(p.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("nic: dup socket for poller: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("nic: socket non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("xsk:%d/%d", p.cfg.Ifindex, p.cfg.Queue))
	// A file the poller refused (it cannot happen for an AF_XDP socket,
	// which implements poll) has no deadlines: fail here, not in Wait.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return fmt.Errorf("nic: socket not pollable by the runtime: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("nic: socket raw conn: %w", err)
	}
	p.pollFile, p.pollConn = f, rc
	return nil
}

// sleep parks the calling goroutine until the RX ring holds descriptors,
// signal is called, timeout passes (negative: no limit), the socket reports
// an error or the port closes. The caller holds life shared. One Wait parks
// at a time (the poller serialises readers); a signal ends the one parked.
func (p *Port) sleep(timeout time.Duration) (bool, error) {
	now := time.Now()
	end := now.Add(timeout)
	for {
		// An unbound socket (its device went away) never polls ready, so
		// an unbounded wait sleeps in slices and looks at the socket's
		// pending error between them, off the hot path.
		slice := now.Add(p.deviceCheck)
		if timeout >= 0 && end.Before(slice) {
			slice = end
		}
		// Set before the check in the callback: a signal either comes
		// before it (the callback sees wake) or overrides this deadline.
		if err := p.pollFile.SetReadDeadline(slice); err != nil {
			return false, fmt.Errorf("nic: poll deadline: %w", err)
		}
		var ready bool
		err := p.pollConn.Read(func(uintptr) bool {
			ready = p.rxReady()
			return ready || p.wake.Load()
		})
		if p.closed.Load() {
			return false, ErrClosed
		}
		switch {
		case err == nil:
			p.wake.Store(false)
			return ready || p.rxReady(), nil
		case !errors.Is(err, os.ErrDeadlineExceeded):
			// An error event (EPOLLERR) or a closed file.
			return false, p.socketError()
		case p.wake.Swap(false):
			return p.rxReady(), nil
		}
		if errno, err := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && errno != 0 {
			return false, p.errnoError(unix.Errno(errno))
		}
		now = time.Now()
		if timeout >= 0 && !now.Before(end) {
			return p.rxReady(), nil
		}
	}
}

// aLongTimeAgo is a read deadline in the past: setting it ends a park.
var aLongTimeAgo = time.Unix(1, 0)

// signal makes the parked Wait, or the next one, return.
func (p *Port) signal() {
	p.wake.Store(true)
	_ = p.pollFile.SetReadDeadline(aLongTimeAgo)
}
