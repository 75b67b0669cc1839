package stack

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"
)

// Capture writes every frame an Endpoint receives and sends to a pcap stream
// (the classic libpcap format, LINKTYPE_ETHERNET), readable by tcpdump -r and
// Wireshark. tcpdump on the interface does not see AF_XDP traffic reliably:
// frames redirected to an AF_XDP socket skip the kernel's taps, and frames it
// transmits in zero-copy mode never reach them.
//
// Frames are captured as they cross the endpoint: received frames before any
// parsing (malformed ones included), sent frames as written into UMEM, after
// segmentation. A Capture is safe for concurrent use; writes are serialised,
// so capturing costs throughput and is meant for debugging.
type Capture struct {
	snap  int
	clock func() time.Time

	mu sync.Mutex
	// +checklocks:mu
	w io.Writer
	// +checklocks:mu
	hdr [16]byte
	// +checklocks:mu
	err error
	// +checklocks:mu
	frames uint64
}

// NewCapture writes the pcap file header to w and returns a Capture that
// keeps at most snapLen bytes of each frame (0: 65535).
func NewCapture(w io.Writer, snapLen int) (*Capture, error) {
	if snapLen <= 0 || snapLen > 65535 {
		snapLen = 65535
	}
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4) // microsecond timestamps
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], uint32(snapLen))
	binary.LittleEndian.PutUint32(h[20:], 1) // LINKTYPE_ETHERNET
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("stack: pcap header: %w", err)
	}
	return &Capture{snap: snapLen, clock: time.Now, w: w}, nil
}

// write records one frame. The first write error stops the capture and is
// kept for Err; the data path never sees it.
func (c *Capture) write(frame []byte) {
	if c == nil {
		return
	}
	ts := c.clock()
	incl := min(len(frame), c.snap)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	binary.LittleEndian.PutUint32(c.hdr[0:], uint32(ts.Unix()))
	binary.LittleEndian.PutUint32(c.hdr[4:], uint32(ts.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(c.hdr[8:], uint32(incl))
	binary.LittleEndian.PutUint32(c.hdr[12:], uint32(len(frame)))
	if _, c.err = c.w.Write(c.hdr[:]); c.err != nil {
		return
	}
	if _, c.err = c.w.Write(frame[:incl]); c.err == nil {
		c.frames++
	}
}

// Frames returns how many frames were captured.
func (c *Capture) Frames() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

// Err returns the write error that stopped the capture, if any.
func (c *Capture) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
