package stack

import (
	"errors"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xdpnet/xdpnet/nic"
)

// WritePackets implements stack.LinkEndpoint. Packets go to the queue their
// flow hashes to; consecutive packets of one queue share a kick. When frames
// or TX ring room stay short for TXWait, the rest of the batch is dropped
// and counted and ErrNoBufferSpace returned: TCP treats the segments as lost
// and retransmits them, so no stream data is lost. The caller keeps its
// references to pkts.
func (e *Endpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	if e.closed.Load() {
		return 0, &tcpip.ErrClosedForSend{}
	}
	all := pkts.AsSlice()
	if len(e.queues) == 1 {
		return e.queues[0].write(all)
	}
	written := 0
	var firstErr tcpip.Error
	for start := 0; start < len(all); {
		qi := e.pick(all[start])
		end := start + 1
		for end < len(all) && e.pick(all[end]) == qi {
			end++
		}
		n, err := e.queues[qi].write(all[start:end])
		written += n
		if err != nil && firstErr == nil {
			firstErr = err
		}
		start = end
	}
	return written, firstErr
}

// pick returns the queue of pkt's flow. TCP stamps each connection's packets
// with a random hash; other packets hash their addresses and ports.
func (e *Endpoint) pick(pkt *gstack.PacketBuffer) int {
	h := pkt.Hash
	if h == 0 {
		h = flowHash(pkt)
	}
	return int(h % uint32(len(e.queues)))
}

func flowHash(pkt *gstack.PacketBuffer) uint32 {
	return hashFlow(pkt.NetworkProtocolNumber, pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice())
}

// pickFlow returns the queue of a flow that netstack's packets with these
// IP and transport headers take.
func (e *Endpoint) pickFlow(proto tcpip.NetworkProtocolNumber, nh, th []byte) int {
	return int(hashFlow(proto, nh, th) % uint32(len(e.queues)))
}

// hashFlow hashes a packet's addresses and ports (FNV-1a).
func hashFlow(proto tcpip.NetworkProtocolNumber, nh, th []byte) uint32 {
	const prime = 16777619
	h := uint32(2166136261)
	mix := func(b []byte) {
		for _, c := range b {
			h = (h ^ uint32(c)) * prime
		}
	}
	switch {
	case proto == header.IPv4ProtocolNumber && len(nh) >= header.IPv4MinimumSize:
		mix(nh[12:20])
	case proto == header.IPv6ProtocolNumber && len(nh) >= header.IPv6MinimumSize:
		mix(nh[8:40])
	}
	if len(th) >= 4 {
		mix(th[:4])
	}
	return h
}

// write sends pkts on this queue.
func (q *queue) write(pkts []*gstack.PacketBuffer) (int, tcpip.Error) {
	q.txMu.Lock()
	defer q.txMu.Unlock()
	if q.txClosed {
		return 0, &tcpip.ErrClosedForSend{}
	}
	w := txWork{q: q}
	written := 0
	for _, pkt := range pkts {
		if w.add(pkt) {
			written++
		}
	}
	w.flush()
	q.ctr.txPackets.Add(uint64(written))
	if w.dropped {
		return written, &tcpip.ErrNoBufferSpace{}
	}
	return written, nil
}

// txWork is one write call on a queue, run with the queue's txMu held.
type txWork struct {
	q        *queue
	deadline time.Time // zero until the call first has to wait
	dropped  bool
}

// wait sleeps until frames or ring room may have come back (the port's
// WaitTX) and reports whether the call may try again: not past TXWait, and
// the link is not known to be down. The first wait of a call starts its
// TXWait budget.
func (w *txWork) wait() bool {
	if w.q.txLinkDown.Load() {
		return false
	}
	now := time.Now()
	if w.deadline.IsZero() {
		w.deadline = now.Add(w.q.e.opts.TXWait)
		w.q.ctr.txWaits.Add(1)
	}
	left := w.deadline.Sub(now)
	if left <= 0 {
		return false
	}
	w.q.ctr.txWaitRounds.Add(1)
	w.q.port.WaitTX(left)
	return true
}

// add builds pkt's frames (several for a GSO segment) after the ones
// already pending. It reports whether it did; if not, the packet was
// dropped and counted.
func (w *txWork) add(pkt *gstack.PacketBuffer) bool {
	q := w.q
	gso := pkt.GSOOptions.Type == gstack.GSOTCPv4 || pkt.GSOOptions.Type == gstack.GSOTCPv6
	hdrLen := pkt.HeaderSize()
	payload := pkt.Data().Size()
	segs, mss := 1, payload
	if gso {
		if m := int(pkt.GSOOptions.MSS); m > 0 && payload > m {
			mss = m
			segs = (payload + mss - 1) / mss
		}
	}
	if hdrLen+mss > q.e.maxFrame || segs > txScratch {
		q.ctr.txDropTooBig.Add(1)
		w.dropped = true
		return false
	}
	if len(q.txDescs)+segs > cap(q.txDescs) {
		w.flush()
	}
	if !w.alloc(segs) {
		q.ctr.txDropNoFrame.Add(uint64(segs))
		w.dropped = true
		return false
	}
	descs := q.txDescs[len(q.txDescs) : len(q.txDescs)+segs]
	if gso {
		q.segment(pkt, descs, mss)
		q.ctr.txGSOPackets.Add(1)
	} else {
		f := q.port.Frame(descs[0])
		n := copyPacket(f, pkt)
		descs[0].Len = uint32(n)
		q.e.opts.Capture.write(f[:n])
	}
	q.txDescs = q.txDescs[:len(q.txDescs)+segs]
	return true
}

// alloc gets n frames after the pending ones, waiting for completions within
// the call's budget. On failure it gives back what it got.
func (w *txWork) alloc(n int) bool {
	q := w.q
	dst := q.txDescs[len(q.txDescs) : len(q.txDescs)+n]
	got := q.port.Alloc(dst)
	for got < n {
		// Frames come back when the kernel completes sends: push out what
		// is pending first (the frames got so far move to the front of
		// the scratch), then poll the completion ring.
		if len(q.txDescs) > 0 {
			w.flush()
			copy(q.txDescs[:got], dst[:got])
			dst = q.txDescs[:n]
		}
		if !w.wait() {
			if got > 0 {
				q.port.Release(dst[:got])
			}
			return false
		}
		got += q.port.Alloc(dst[got:])
	}
	return true
}

// flush sends the frames pending in the queue's scratch.
func (w *txWork) flush() {
	w.send(w.q.txDescs)
	w.q.txDescs = w.q.txDescs[:0]
}

// send puts frames on the TX ring (one kick), waiting for ring room within
// the call's budget; frames that cannot go are released and counted.
func (w *txWork) send(pending []nic.Desc) {
	q := w.q
	for len(pending) > 0 {
		k, err := q.port.Transmit(pending)
		q.ctr.txKicks.Add(1)
		q.ctr.txFrames.Add(uint64(k))
		for _, d := range pending[:k] {
			q.ctr.txBytes.Add(uint64(d.Len))
		}
		pending = pending[k:]
		switch {
		case err == nil:
			q.txLinkDown.Store(false)
			continue
		case errors.Is(err, nic.ErrLinkDown):
			// Frames on the ring leave when the link is back; new ones
			// would only fill the ring, so drop at once until a kick
			// succeeds again.
			q.txLinkDown.Store(true)
			if len(pending) > 0 {
				q.ctr.txDropLinkDown.Add(uint64(len(pending)))
			}
		case errors.Is(err, nic.ErrRingFull):
			if w.wait() {
				continue
			}
			q.ctr.txDropRingFull.Add(uint64(len(pending)))
		default:
			q.ctr.txErrors.Add(1)
			q.ctr.txDropError.Add(uint64(len(pending)))
		}
		break
	}
	if len(pending) > 0 {
		q.port.Release(pending)
		w.dropped = true
	}
}

// copyPacket copies pkt's bytes (headers and payload) into dst, which the
// caller sized, and returns how many.
func copyPacket(dst []byte, pkt *gstack.PacketBuffer) int {
	views, off := pkt.AsViewList()
	n := 0
	for v := views.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(dst[n:], b[off:])
		off = 0
	}
	return n
}

// payloadCursor walks a packet's payload across its views.
type payloadCursor struct {
	v   *buffer.View
	off int
}

func newPayloadCursor(pkt *gstack.PacketBuffer) payloadCursor {
	views, off := pkt.AsViewList()
	off += pkt.HeaderSize()
	v := views.Front()
	for v != nil && off >= v.Size() {
		off -= v.Size()
		v = v.Next()
	}
	return payloadCursor{v: v, off: off}
}

// read copies len(dst) payload bytes into dst and returns how many it had.
func (c *payloadCursor) read(dst []byte) int {
	n := 0
	for n < len(dst) && c.v != nil {
		k := copy(dst[n:], c.v.AsSlice()[c.off:])
		n += k
		c.off += k
		if c.off == c.v.Size() {
			c.v, c.off = c.v.Next(), 0
		}
	}
	return n
}

// segment cuts a TCP packet that netstack built for GSO (one header, a
// payload of many MSS, a partial checksum) into frames, as a NIC's TSO
// would: each frame gets the headers with its own IP length (and IPv4 ID and
// header checksum), sequence number and TCP checksum (see finishChecksum).
// FIN and PSH stay on the last frame only, CWR on the first only.
func (q *queue) segment(pkt *gstack.PacketBuffer, descs []nic.Desc, mss int) {
	link := pkt.LinkHeader().Slice()
	nh := pkt.NetworkHeader().Slice()
	th := pkt.TransportHeader().Slice()
	l2, l3, l4 := len(link), len(nh), len(th)
	v4 := pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber
	var src, dst tcpip.Address
	var id0 uint16
	if v4 {
		ip := header.IPv4(nh)
		src, dst, id0 = ip.SourceAddress(), ip.DestinationAddress(), ip.ID()
	} else {
		ip := header.IPv6(nh)
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	}
	seq0 := header.TCP(th).SequenceNumber()
	flags0 := header.TCP(th).Flags()
	left := pkt.Data().Size()
	cur := newPayloadCursor(pkt)
	for i := range descs {
		f := q.port.Frame(descs[i])
		copy(f, link)
		copy(f[l2:], nh)
		copy(f[l2+l3:], th)
		segLen := min(mss, left)
		got := cur.read(f[l2+l3+l4 : l2+l3+l4+segLen])
		segLen = got
		left -= segLen
		if v4 {
			ip := header.IPv4(f[l2 : l2+l3])
			ip.SetTotalLength(uint16(l3 + l4 + segLen))
			ip.SetID(id0 + uint16(i))
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		} else {
			header.IPv6(f[l2 : l2+l3]).SetPayloadLength(uint16(l3 - header.IPv6MinimumSize + l4 + segLen))
		}
		tcp := header.TCP(f[l2+l3 : l2+l3+l4])
		tcp.SetSequenceNumber(seq0 + uint32(i*mss))
		flags := flags0
		if i != len(descs)-1 {
			flags &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if i != 0 {
			flags &^= header.TCPFlagCwr
		}
		tcp.SetFlags(uint8(flags))
		tcp.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(l4+segLen)))
		n := l2 + l3 + l4 + segLen
		descs[i].Len = uint32(n)
		q.finishChecksum(&descs[i], f[:n], l2+l3, header.TCPChecksumOffset)
		q.e.opts.Capture.write(f[:n])
	}
	q.ctr.txGSOSegments.Add(uint64(len(descs)))
}

// finishChecksum has the checksum of the TCP or UDP segment at
// f[start:] finished, its field at start+offset holding the pseudo-header
// sum: by the port on transmission where it offers that (checksum offload,
// nic.Port.TxChecksum), here otherwise. d names f and has its length set.
// Packet captures see the frame before the port finishes it, as on Linux.
func (q *queue) finishChecksum(d *nic.Desc, f []byte, start, offset int) {
	if !q.port.TxChecksum(d, start, offset) {
		FinishChecksum(f[start:], offset)
	}
}

// writeFrame sends one frame that build writes into a free UMEM frame
// (returning its length) by way of the queue's kicker, so that frames sent
// one per call leave in batches; it is the UDP fast path's link write. If
// csumStart is not negative, the frame's UDP header starts there with the
// pseudo-header sum in its checksum (see finishChecksum). It reports whether
// the frame was queued: when no frame comes free within TXWait, or the link
// is down, the frame is dropped and counted. It fails, with
// ErrEndpointClosed, only once the endpoint is closing.
func (q *queue) writeFrame(build func(f []byte) int, csumStart int) (bool, error) {
	var w txWork
	w.q = q
	q.fastMu.Lock()
	for {
		if q.fastClosed {
			q.fastMu.Unlock()
			return false, ErrEndpointClosed
		}
		if q.port.Alloc(q.fastAlloc[:]) == 1 {
			break
		}
		// Frames come back as the kernel completes sends, some of them
		// perhaps pending here: let the kicker run, sleep until some do.
		q.fastMu.Unlock()
		if !w.wait() {
			q.ctr.txDropNoFrame.Add(1)
			return false, nil
		}
		q.fastMu.Lock()
	}
	// In place: a local's address passed through the Port interface
	// would move it to the heap, once per datagram.
	d := &q.fastAlloc[0]
	f := q.port.Frame(*d)
	n := build(f)
	d.Len = uint32(n)
	if csumStart >= 0 {
		q.finishChecksum(d, f[:n], csumStart, udpChecksumOffset)
	}
	q.e.opts.Capture.write(f[:n])
	q.fastPending = append(q.fastPending, *d)
	q.ctr.txPackets.Add(1)
	q.ctr.txUDPFast.Add(1)
	if !q.fastKicking {
		q.fastKicking = true
		q.fastKicker.Add(1)
		go q.kick()
	}
	q.fastMu.Unlock()
	return true, nil
}

// kick is the queue's kicker goroutine: it transmits what writeFrame queued
// until a round finds nothing.
func (q *queue) kick() {
	defer q.fastKicker.Done()
	for {
		q.fastMu.Lock()
		batch := q.fastPending
		if len(batch) == 0 {
			q.fastKicking = false
			q.fastMu.Unlock()
			return
		}
		q.fastPending = q.fastSpare
		q.fastMu.Unlock()
		w := txWork{q: q}
		w.send(batch)
		q.fastMu.Lock()
		q.fastSpare = batch[:0]
		q.fastMu.Unlock()
	}
}

// closeFast refuses further fast-path frames and waits for the kicker to
// send those already queued.
func (q *queue) closeFast() {
	q.fastMu.Lock()
	q.fastClosed = true
	q.fastMu.Unlock()
	q.fastKicker.Wait()
}
