// Package bufring is the frame allocator under xdpnet: it hands out the
// frames of a UMEM region and takes them back, lock-free, from any goroutine,
// and it provides pooled byte buffers for the layers above.
//
// # Frames
//
// A [FramePool] cuts a region into Frames frames of FrameSize bytes and
// identifies each by its offset (address), i*FrameSize, as AF_XDP
// descriptors do. Free addresses live in a bounded lock-free MPMC [Ring]
// (sequence-numbered slots, batch push and pop, one compare-and-swap per
// batch) and in per-worker [Cache]s: a worker creates its own Cache, and Get
// and Put are served from its local stack, touching the shared ring only once
// per Batch frames. A frame got through one Cache may be released through any
// other (cross-worker transfer): frames belong to the pool, not to caches.
//
// Ownership: a frame returned by Get, GetBatch, GetRX or Wait belongs to the
// caller until it releases it with Put or PutBatch. Handing it to the kernel
// (fill or TX ring) or to another worker passes that duty on; nic/ releases
// frames the kernel returns (RX descriptors it is done with, TX completions).
//
// # RX reserve
//
// Reserve frames are kept aside for the RX fill path ([Cache.GetRX], Wait
// with [ClassRX]); Get and less critical waiters never take them. Releases
// refill the reserve before serving any other waiter, so a TX or application
// side that holds every other frame cannot stop the socket from receiving
// the packets (for example ACKs) that would let it release them.
//
// # Waiters
//
// [Cache.Wait] sleeps until a frame is released when the pool is exhausted.
// Waiters are served oldest first within a [Class], more critical classes
// first; a release hands the frame straight to the waiter, under the queue
// lock, so that checking the waiter still waits and giving it the frame is
// one step. A waiter whose context ends after a frame was handed to it
// passes the frame on (next waiter or shared ring). The fast path pays for
// all this with one atomic load per Put of a line that is only written when
// waiters come and go; the queue itself is guarded by a mutex because it is
// used only when goroutines are about to sleep anyway.
//
// # Byte buffers
//
// [BytePool] pools heap byte buffers in size classes for stream data in mux/
// and engine/, on the same ring and cache machinery. Changing its sizes
// ([BytePool.Resize]) starts a new generation: caches drop buffers of the old
// sizes at their next housekeeping, without stopping traffic.
//
// Goroutines that are not workers (one per connection or request) use the
// shared path, [BytePool.Acquire] and [BytePool.Release]: lock-free on the
// shared rings, safe from any goroutine. With a Limit it is the pool's
// memory bound: an Acquire that would exceed it sleeps in the same FIFO
// waiter queue as frame waiters, with a deadline and the same cancel-safe
// hand-off, and is woken by a Release.
//
// # Debug mode
//
// Building with -tags bufring_debug records each frame's owner (pool or
// user) and panics at the first double release, foreign address or frame
// handed out twice. The switch is a constant, so normal builds carry no
// checks at all. Run the package's tests in both modes:
//
//	go test -race -shuffle on ./bufring/
//	go test -race -shuffle on -tags bufring_debug ./bufring/
package bufring
