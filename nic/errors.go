package nic

import (
	"errors"
	"fmt"
	"net"

	"github.com/xdpnet/xdpnet/bpf"
)

var (
	// ErrClosed is returned by every method of a closed Port. It wraps
	// net.ErrClosed.
	ErrClosed = fmt.Errorf("nic: port closed: %w", net.ErrClosed)

	// ErrLinkDown is wrapped, together with the kernel's ENETDOWN, by
	// Transmit while the interface is down. Descriptors already placed on
	// the TX ring stay there and leave when the link is up again and the
	// next Transmit (or Wait) kicks the kernel; nothing needs reopening.
	ErrLinkDown = errors.New("nic: link down")

	// ErrRingFull is returned by Transmit when the TX ring had no room for
	// every descriptor; the ones not taken still belong to the caller.
	ErrRingFull = errors.New("nic: tx ring full")

	// ErrBadDesc is wrapped by Transmit's error for a descriptor the kernel
	// would refuse; it and those after it stay the caller's.
	ErrBadDesc = errors.New("nic: bad tx descriptor")

	// ErrNotSupported is bpf.ErrNotSupported: wrapped by errors that report
	// a kernel or driver feature as absent (AF_XDP itself, forced zero-copy).
	ErrNotSupported = bpf.ErrNotSupported
)
