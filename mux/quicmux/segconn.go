package quicmux

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// segmentingPacketConn presents a socket that is not a kernel UDP socket
// (the engine's netstack) to quic-go as one with UDP generic segmentation
// offload, so that quic-go takes its batched send path: it packs a burst
// of equal-size packets into one buffer and hands it over in one call,
// where on any other net.PacketConn it queues every packet to its send
// goroutine on its own, a channel hand-off and a goroutine wake-up per
// packet (bench/mux.md measures the difference).
//
// quic-go decides by probing the socket's file descriptor (SyscallConn)
// for UDP_SEGMENT and sets its options there; the netstack socket has none,
// so the probes go to a placeholder kernel UDP socket that is never bound
// and never carries a datagram. What quic-go then sends is parsed here as
// the kernel would: WriteMsgUDP cuts b into datagrams of the UDP_SEGMENT
// control message's size and writes them in order. quic-go reads through
// ReadBatch, one datagram per call. ECN marks that quic-go asks for in
// control messages are not applied: its ECN validation (RFC 9000 section
// 13.4.2) sees no ECN counts come back and stops marking. quic-go also
// sizes the placeholder's socket buffers (the netstack socket's are set
// through SetReadBuffer and SetWriteBuffer as before); without
// CAP_NET_ADMIN it cannot raise them past the kernel's rmem_max and logs
// once per process that it failed to, which is about the placeholder only.
type segmentingPacketConn struct {
	*boundedPacketConn
	probe *os.File
	// calls and datagrams count WriteMsgUDP's calls and the datagrams
	// they carried.
	calls, datagrams atomic.Uint64
}

// newSegmentingPacketConn wraps pc; Close closes the placeholder socket too.
func newSegmentingPacketConn(pc *boundedPacketConn) (*segmentingPacketConn, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		// A kernel without IPv6: quic-go's probes need only one family.
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return nil, fmt.Errorf("mux: placeholder UDP socket: %w", err)
		}
	}
	return &segmentingPacketConn{boundedPacketConn: pc, probe: os.NewFile(uintptr(fd), "mux-udp-probe")}, nil
}

// SyscallConn returns the placeholder socket, for quic-go's option probes.
func (p *segmentingPacketConn) SyscallConn() (syscall.RawConn, error) {
	return p.probe.SyscallConn()
}

// udpSegmentSize is the payload of a UDP_SEGMENT control message.
const udpSegmentSize = 2

// WriteMsgUDP writes b, cut into datagrams of the UDP_SEGMENT size if oob
// carries one (the last may be shorter), as one datagram otherwise.
func (p *segmentingPacketConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	seg := len(b)
	for rest := oob; len(rest) > 0; {
		h, data, next, err := unix.ParseOneSocketControlMessage(rest)
		if err != nil {
			return 0, 0, fmt.Errorf("mux: control message: %w", err)
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_SEGMENT {
			if len(data) < udpSegmentSize {
				return 0, 0, fmt.Errorf("mux: UDP_SEGMENT of %d bytes", len(data))
			}
			if s := int(binary.NativeEndian.Uint16(data)); s > 0 {
				seg = s
			}
		}
		rest = next
	}
	p.calls.Add(1)
	sent := 0
	defer func() { p.datagrams.Add(uint64(sent)) }()
	for n < len(b) {
		end := min(n+seg, len(b))
		if _, err := p.WriteTo(b[n:end], addr); err != nil {
			return n, len(oob), err
		}
		sent++
		n = end
	}
	return n, len(oob), nil
}

// ReadMsgUDP reads one datagram; there are no control messages.
func (p *segmentingPacketConn) ReadMsgUDP(b, _ []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	n, from, err := p.ReadFrom(b)
	addr, _ = from.(*net.UDPAddr)
	return n, 0, 0, addr, err
}

// ReadBatch reads one datagram into ms[0].
func (p *segmentingPacketConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	if len(ms) == 0 || len(ms[0].Buffers) == 0 {
		return 0, nil
	}
	n, from, err := p.ReadFrom(ms[0].Buffers[0])
	if err != nil {
		return 0, err
	}
	ms[0].N, ms[0].NN, ms[0].Flags, ms[0].Addr = n, 0, 0, from
	return 1, nil
}

func (p *segmentingPacketConn) Close() error {
	err := p.boundedPacketConn.Close()
	if perr := p.probe.Close(); err == nil {
		err = perr
	}
	return err
}
