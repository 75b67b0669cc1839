package nic

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// xsk is one AF_XDP socket with the rings it was made with mapped (views of
// the others stay zero). It is released by
// close, which unmaps the rings before closing the descriptor: a ring mapping
// holds a reference on the socket file, so a socket whose rings stay mapped is
// never released and keeps its queue (and its pinned UMEM) busy. asavie/xdp
// v0.3.3 never unmaps its rings, which is one reason nic/ sets sockets up
// itself (see doc.go).
type xsk struct {
	fd   int
	fill addrRing
	comp addrRing
	rx   descRing
	tx   descRing
	maps [][]byte
}

// ringSizes are the ring sizes in descriptors (powers of two); a zero size
// leaves that ring out.
type ringSizes struct{ fill, comp, rx, tx uint32 }

// mapUMEM returns anonymous, populated memory for a UMEM of size bytes. It is
// page-aligned, as XDP_UMEM_REG requires.
func mapUMEM(size int) ([]byte, error) {
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("nic: mmap umem of %d bytes: %w", size, err)
	}
	return mem, nil
}

// newXSK creates an AF_XDP socket, sets up and maps the rings sizes asks
// for. With mem it registers mem as the socket's UMEM, reserving txMeta
// bytes of TX metadata before every transmitted packet if txMeta is not
// zero (kernels before 6.11 refuse that with EINVAL); without mem, the
// socket can only be bound to share another's (bindShared) and must ask for
// neither fill nor completion ring. It does not bind: see bind.
func newXSK(mem []byte, frameSize, txMeta uint32, sizes ringSizes) (s *xsk, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, fmt.Errorf("nic: AF_XDP socket: %w (%w)", err, ErrNotSupported)
		}
		return nil, fmt.Errorf("nic: AF_XDP socket: %w", err)
	}
	s = &xsk{fd: fd}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	if mem != nil {
		reg := unix.XDPUmemReg{
			Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem)))),
			Len:  uint64(len(mem)),
			Size: frameSize,
		}
		if txMeta != 0 {
			reg.Flags |= unix.XDP_UMEM_TX_METADATA_LEN
			reg.Tx_metadata_len = txMeta
		}
		if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			return nil, fmt.Errorf("nic: XDP_UMEM_REG: %w", err)
		}
	}
	for _, o := range []struct {
		opt  int
		size uint32
		name string
	}{
		{unix.XDP_UMEM_FILL_RING, sizes.fill, "XDP_UMEM_FILL_RING"},
		{unix.XDP_UMEM_COMPLETION_RING, sizes.comp, "XDP_UMEM_COMPLETION_RING"},
		{unix.XDP_RX_RING, sizes.rx, "XDP_RX_RING"},
		{unix.XDP_TX_RING, sizes.tx, "XDP_TX_RING"},
	} {
		if o.size == 0 {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, o.opt, int(o.size)); err != nil {
			return nil, fmt.Errorf("nic: %s %d: %w", o.name, o.size, err)
		}
	}

	var off unix.XDPMmapOffsets
	optlen := uint32(unsafe.Sizeof(off))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP,
		unix.XDP_MMAP_OFFSETS, uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&optlen)), 0); errno != 0 {
		return nil, fmt.Errorf("nic: XDP_MMAP_OFFSETS: %w", errno)
	}

	// The process produces into the fill and TX rings and consumes the
	// completion and RX rings.
	if sizes.fill != 0 {
		if s.fill.ring, s.fill.slots, err = mapRing[uint64](s, "fill", unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, sizes.fill, true); err != nil {
			return nil, err
		}
	}
	if sizes.comp != 0 {
		if s.comp.ring, s.comp.slots, err = mapRing[uint64](s, "completion", unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, sizes.comp, false); err != nil {
			return nil, err
		}
	}
	if sizes.rx != 0 {
		if s.rx.ring, s.rx.slots, err = mapRing[Desc](s, "rx", unix.XDP_PGOFF_RX_RING, off.Rx, sizes.rx, false); err != nil {
			return nil, err
		}
	}
	if sizes.tx != 0 {
		if s.tx.ring, s.tx.slots, err = mapRing[Desc](s, "tx", unix.XDP_PGOFF_TX_RING, off.Tx, sizes.tx, true); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// mapRing maps one of s's rings, size entries of T, and returns its index
// view and slots. A fresh socket's indices start at zero, but the view
// reads them anyway so the cached ones are right by construction: the
// producer's own index is local for a ring the process produces into, the
// consumer's for one it consumes.
func mapRing[T uint64 | Desc](s *xsk, name string, pgoff int64, o unix.XDPRingOffset, size uint32, produce bool) (ring, []T, error) {
	m, err := unix.Mmap(s.fd, pgoff, int(o.Desc)+int(size)*int(unsafe.Sizeof(*new(T))),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return ring{}, nil, fmt.Errorf("nic: mmap %s ring: %w", name, err)
	}
	s.maps = append(s.maps, m)
	base := unsafe.Pointer(unsafe.SliceData(m))
	r := ringAt(base, o.Producer, o.Consumer, o.Flags, size)
	if produce {
		r.local, r.cached = r.loadProducer(), r.loadConsumer()
	} else {
		r.local, r.cached = r.loadConsumer(), r.loadProducer()
	}
	return r, slotsAt[T](base, o.Desc, size), nil
}

// bind binds the socket to (ifindex, queue) with the XDP_* bind flags.
func (s *xsk) bind(ifindex, queue int, flags uint16) error {
	return unix.Bind(s.fd, &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(ifindex), QueueID: uint32(queue)})
}

// bindShared binds the socket to the queue owner is bound to, sharing
// owner's UMEM and its fill and completion rings (XDP_SHARED_UMEM; the
// mode and the need_wakeup setting are owner's).
func (s *xsk) bindShared(ifindex, queue int, owner *xsk) error {
	return unix.Bind(s.fd, &unix.SockaddrXDP{Flags: unix.XDP_SHARED_UMEM, Ifindex: uint32(ifindex), QueueID: uint32(queue), SharedUmemFD: uint32(owner.fd)})
}

// zeroCopy reports whether the bound socket runs in zero-copy mode.
func (s *xsk) zeroCopy() (bool, error) {
	var opts struct{ Flags uint32 } // struct xdp_options
	optlen := uint32(unsafe.Sizeof(opts))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP,
		unix.XDP_OPTIONS, uintptr(unsafe.Pointer(&opts)), uintptr(unsafe.Pointer(&optlen)), 0); errno != 0 {
		return false, fmt.Errorf("nic: XDP_OPTIONS: %w", errno)
	}
	return opts.Flags&unix.XDP_OPTIONS_ZEROCOPY != 0, nil
}

// statistics reads the kernel's XDP_STATISTICS for the socket.
func (s *xsk) statistics() (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	optlen := uint32(unsafe.Sizeof(st))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP,
		unix.XDP_STATISTICS, uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&optlen)), 0); errno != 0 {
		return st, fmt.Errorf("nic: XDP_STATISTICS: %w", errno)
	}
	return st, nil
}

// kickTX asks the kernel to process the TX ring (sendto with no data).
func (s *xsk) kickTX() unix.Errno {
	_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return errno
}

// kickRX asks the driver to refill from the fill ring (recvfrom with no
// buffer), as the kernel wants when it set need_wakeup on the fill ring.
func (s *xsk) kickRX() unix.Errno {
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return errno
}

// close unmaps the rings and closes the socket; the kernel then unbinds it
// and unpins its UMEM. The ring views must not be used afterwards.
func (s *xsk) close() error {
	var errs []error
	for _, m := range s.maps {
		if err := unix.Munmap(m); err != nil {
			errs = append(errs, fmt.Errorf("nic: munmap ring: %w", err))
		}
	}
	s.maps = nil
	s.fill, s.comp, s.rx, s.tx = addrRing{}, addrRing{}, descRing{}, descRing{}
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("nic: close socket: %w", err))
		}
		s.fd = -1
	}
	return errors.Join(errs...)
}

func setsockopt(fd, opt int, val unsafe.Pointer, size uintptr) error {
	if _, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP,
		uintptr(opt), uintptr(val), size, 0); errno != 0 {
		return errno
	}
	return nil
}
