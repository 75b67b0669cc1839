package testenv

import (
	"syscall"
	"time"
)

// CPUTime is the CPU time the process used so far, user and system: a
// benchmark's client and server together, steadier than wall time on a
// shared machine.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
