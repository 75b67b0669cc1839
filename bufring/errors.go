package bufring

import (
	"errors"
	"fmt"
	"net"
)

var (
	// ErrNotPowerOfTwo is returned for a ring capacity that is not a power of two.
	ErrNotPowerOfTwo = errors.New("not a power of two")

	// ErrConfig wraps every invalid FrameConfig or ByteConfig.
	ErrConfig = errors.New("bufring: invalid configuration")

	// ErrClosed is returned by Wait on a closed pool. It wraps net.ErrClosed so
	// that callers testing errors.Is(err, net.ErrClosed) treat it as shutdown.
	ErrClosed = fmt.Errorf("bufring: pool closed: %w", net.ErrClosed)

	// ErrTooLarge is returned by BytePool.Acquire for a length above the
	// largest size class: a bounded pool does not allocate outside its
	// classes.
	ErrTooLarge = errors.New("bufring: buffer larger than the largest size class")

	// ErrConservation is wrapped by CheckConservation when frames are missing,
	// duplicated or foreign.
	ErrConservation = errors.New("bufring: frame conservation violated")
)
