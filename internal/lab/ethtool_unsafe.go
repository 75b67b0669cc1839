package lab

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolValue is struct ethtool_value from <linux/ethtool.h>.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with the ifr_data member of the union.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte // rest of the union
}

// getFeature reads one legacy ethtool feature flag (ETHTOOL_GTXCSUM,
// ETHTOOL_GGRO, ...) of the interface name of the calling thread's
// network namespace.
func getFeature(name string, cmd uint32) (bool, error) {
	v, err := ethtool(name, ethtoolValue{cmd: cmd})
	return v.data != 0, err
}

// setFeature sets one legacy ethtool feature flag (ETHTOOL_STXCSUM,
// ETHTOOL_SGRO, ...) on the interface name of the calling thread's network
// namespace. It is what `ethtool -K name tx off` does.
func setFeature(name string, cmd uint32, on bool) error {
	v := ethtoolValue{cmd: cmd}
	if on {
		v.data = 1
	}
	_, err := ethtool(name, v)
	return err
}

// ethtool runs one SIOCETHTOOL request carrying an ethtool_value.
func ethtool(name string, v ethtoolValue) (ethtoolValue, error) {
	if len(name) >= unix.IFNAMSIZ {
		return v, fmt.Errorf("lab: interface name %q too long", name)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return v, fmt.Errorf("lab: ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	var ifr ifreqData
	copy(ifr.name[:], name)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	if errno != 0 {
		return v, fmt.Errorf("lab: ethtool cmd %#x on %s: %w", v.cmd, name, errno)
	}
	return v, nil
}
