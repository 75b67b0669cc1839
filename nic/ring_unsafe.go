package nic

import (
	"sync/atomic"
	"unsafe"
)

// The kernel side of each ring uses smp_load_acquire/smp_store_release on
// these words (see the memory-ordering comment in net/xdp/xsk_queue.h).
// Go's sync/atomic operations are sequentially consistent, which is at least
// acquire for loads and release for stores, and on amd64/arm64 compile to the
// same instructions libxdp uses.

func (r *ring) loadProducer() uint32 { return atomic.LoadUint32(r.producer) }
func (r *ring) loadConsumer() uint32 { return atomic.LoadUint32(r.consumer) }
func (r *ring) loadFlags() uint32    { return atomic.LoadUint32(r.flags) }

// publishProducer makes the descriptors written so far visible to the kernel
// (store-release: the descriptor writes happen before the index moves).
func (r *ring) publishProducer() { atomic.StoreUint32(r.producer, r.local) }

// publishConsumer hands the slots read so far back to the kernel
// (store-release: our descriptor reads happen before the slots are reused).
func (r *ring) publishConsumer() { atomic.StoreUint32(r.consumer, r.local) }

// addrRing is a fill or completion ring: slots are UMEM addresses.
type addrRing struct {
	ring
	slots []uint64
}

// descRing is an RX or TX ring: slots are descriptors.
type descRing struct {
	ring
	slots []Desc
}

// ringAt builds the index view of a ring mapped at base with the kernel's
// offsets (XDP_MMAP_OFFSETS) for it.
func ringAt(base unsafe.Pointer, producer, consumer, flags uint64, size uint32) ring {
	return ring{
		producer: (*uint32)(unsafe.Add(base, producer)),
		consumer: (*uint32)(unsafe.Add(base, consumer)),
		flags:    (*uint32)(unsafe.Add(base, flags)),
		mask:     size - 1,
		size:     size,
	}
}

// slotsAt is the slot array of a ring mapped at base: size entries of T
// (UMEM addresses or descriptors) at the kernel's desc offset.
func slotsAt[T uint64 | Desc](base unsafe.Pointer, desc uint64, size uint32) []T {
	return unsafe.Slice((*T)(unsafe.Add(base, desc)), size)
}
