package nic

import (
	"encoding/binary"
	"math"

	"golang.org/x/sys/unix"
)

// txMetadataLen is the size of struct xsk_tx_metadata (linux/if_xdp.h): the
// flags, then the request's csum_start and csum_offset, padding and
// launch_time. The UMEM reserves it right before every packet transmitted
// (Documentation/networking/xsk-tx-metadata.rst).
const txMetadataLen = 24

// TxChecksum asks for the checksum of d's packet to be finished on its way
// out, as the kernel's CHECKSUM_PARTIAL does: the 16-bit ones' complement
// of the sum of the bytes from start to the packet's end goes to the field
// at start+offset, which must hold the sum of the pseudo-header already
// (RFC 768, RFC 9293 section 3.1). Call it with d.Len set, on a frame the
// caller owns; it writes the request into the frame's TX metadata and sets
// XDP_TX_METADATA in d.Options.
//
// It reports false, leaving d alone, when the port offers no offload (see
// TxChecksumOffload) or start and offset do not fit the packet: the caller
// then finishes the checksum itself.
//
// In copy mode the kernel builds an skb marked CHECKSUM_PARTIAL: a device
// with checksum offload finishes it (a veth leaves it to the receiver,
// which trusts it, as it trusts the kernel's own UDP and TCP), others get
// it computed in software before it leaves.
func (p *Port) TxChecksum(d *Desc, start, offset int) bool {
	if !p.TxChecksumOffload() || start < 0 || offset < 0 || start > math.MaxUint16 || offset > math.MaxUint16 ||
		uint64(start)+uint64(offset)+2 > uint64(d.Len) || d.Addr&p.frameMask < p.txMeta ||
		d.Addr+uint64(d.Len) > uint64(len(p.umem)) {
		return false
	}
	m := p.umem[d.Addr-txMetadataLen : d.Addr]
	binary.NativeEndian.PutUint64(m[0:], unix.XDP_TXMD_FLAGS_CHECKSUM)
	binary.NativeEndian.PutUint16(m[8:], uint16(start))
	binary.NativeEndian.PutUint16(m[10:], uint16(offset))
	clear(m[12:])
	d.Options |= unix.XDP_TX_METADATA
	return true
}

// TxChecksumOffload reports whether TxChecksum offers checksum offload: in
// copy mode on kernels with AF_XDP TX metadata (6.11 and later) unless
// Config.NoTxChecksum. A zero-copy driver without the kernel's TX metadata
// operations ignores checksum requests, and the port does not ask the
// driver which it has (netdev netlink's xsk-features), so it offers none
// there.
func (p *Port) TxChecksumOffload() bool { return p.txMeta != 0 && !p.zeroCopy }
