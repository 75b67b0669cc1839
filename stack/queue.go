package stack

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"

	"github.com/xdpnet/xdpnet/nic"
)

// txScratch is how many frames one Transmit call carries at most: enough for
// a few full GSO segments, small enough to stay in cache.
const txScratch = 256

// queue is one NIC queue of an Endpoint: its port, its receive goroutine's
// state and its transmit state.
type queue struct {
	e    *Endpoint
	idx  int
	port Port
	ctr  counters

	// Receive side: owned by the queue's receive goroutine.
	rxDescs []nic.Desc
	rxViews []*buffer.View
	gro     gro.GRO

	// txMu serialises sends on this queue, so frames of one flow leave in
	// order and the scratch below is shared by no one.
	txMu sync.Mutex
	// +checklocks:txMu
	txDescs []nic.Desc // frames allocated, being filled or waiting to go
	// +checklocks:txMu
	txClosed bool
	// txLinkDown: the last kick found the link down, so sends drop at once
	// instead of waiting for ring room.
	txLinkDown atomic.Bool

	// Frames of the UDP fast path (udpfast.go) wait in fastPending until
	// the queue's kicker, a goroutine the sender that finds none running
	// starts, puts all that gathered meanwhile on the TX ring with one
	// Transmit; it exits when a round finds nothing pending.
	fastMu sync.Mutex
	// +checklocks:fastMu
	fastPending []nic.Desc
	// +checklocks:fastMu
	fastSpare []nic.Desc // the kicker's last batch, reused
	// +checklocks:fastMu
	fastKicking bool
	// +checklocks:fastMu
	fastClosed bool
	// +checklocks:fastMu
	fastAlloc  [1]nic.Desc // Alloc's argument, here so that it does not escape per call
	fastKicker sync.WaitGroup
}

func newQueue(e *Endpoint, idx int, p Port) *queue {
	return &queue{
		e:       e,
		idx:     idx,
		port:    p,
		rxDescs: make([]nic.Desc, e.opts.RXBatch),
		rxViews: make([]*buffer.View, 0, e.opts.RXBatch),
		txDescs: make([]nic.Desc, 0, txScratch),
	}
}

// rxLoop receives until stop is closed or the port is closed.
func (q *queue) rxLoop(d gstack.NetworkDispatcher, stop <-chan struct{}) {
	q.gro.Init(!q.e.opts.DisableGRO)
	q.gro.Dispatcher = d
	errBackoff := time.Duration(0)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, err := q.port.Receive(q.rxDescs)
		if n > 0 {
			q.deliver(q.rxDescs[:n])
		}
		if err != nil {
			if errors.Is(err, nic.ErrClosed) {
				return
			}
			// A failed fill-ring wakeup (link down, say): the frames
			// received are delivered; retry after a pause so a
			// persistent error does not spin.
			q.ctr.rxErrors.Add(1)
			errBackoff = min(max(2*errBackoff, 100*time.Microsecond), 10*time.Millisecond)
			sleepOrStop(errBackoff, stop)
			continue
		}
		errBackoff = 0
		if n == len(q.rxDescs) {
			continue // more may be waiting
		}
		// The port busy-polls (nic.Config.BusyPoll) before it parks in
		// the runtime poller; Close wakes it.
		if _, err := q.port.Wait(-1); err != nil {
			if errors.Is(err, nic.ErrClosed) {
				return
			}
			q.ctr.rxErrors.Add(1)
			sleepOrStop(time.Millisecond, stop)
		}
	}
}

func sleepOrStop(d time.Duration, stop <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
	case <-t.C:
	}
}

// deliver copies a batch of frames into netstack buffers, gives the frames
// back to the port, then verifies, coalesces and delivers the packets.
func (q *queue) deliver(descs []nic.Desc) {
	e := q.e
	views := q.rxViews[:0]
	var bytes uint64
	for _, d := range descs {
		f := q.port.Frame(d)
		bytes += uint64(len(f))
		e.opts.Capture.write(f)
		if len(f) < header.EthernetMinimumSize {
			q.ctr.rxDropShort.Add(1)
			continue
		}
		views = append(views, buffer.NewViewWithData(f))
	}
	q.port.Release(descs)
	q.ctr.rxFrames.Add(uint64(len(descs)))
	q.ctr.rxBytes.Add(bytes)
	q.ctr.rxBatches.Add(1)

	for i, v := range views {
		views[i] = nil
		q.deliverOne(v)
	}
	q.gro.Flush()
	q.rxViews = views[:0]
}

// deliverOne hands one frame (owned by the callee from now on) to GRO.
func (q *queue) deliverOne(v *buffer.View) {
	e := q.e
	b := v.AsSlice()
	eth := header.Ethernet(b)
	dst := eth.DestinationAddress()
	var typ tcpip.PacketType
	switch {
	case dst == e.mac:
		typ = tcpip.PacketHost
	case dst == header.EthernetBroadcastAddress:
		typ = tcpip.PacketBroadcast
	case header.IsMulticastEthernetAddress(dst):
		typ = tcpip.PacketMulticast
	case e.opts.Promiscuous:
		typ = tcpip.PacketOtherHost
	default:
		q.ctr.rxDropOtherHost.Add(1)
		v.Release()
		return
	}
	proto := eth.Type()
	if !e.opts.TrustRXChecksum {
		switch cv := verifyChecksums(proto, b[header.EthernetMinimumSize:]); {
		case cv.bad():
			q.ctr.rxDropChecksum[badChecksumIndex(cv)].Add(1)
			v.Release()
			return
		case cv == csumUnverified:
			q.ctr.rxUnverified.Add(1)
		}
	}
	if typ == tcpip.PacketHost {
		if e.flows != nil {
			e.flows.noteSYN(proto, b[header.EthernetMinimumSize:], q.idx)
		}
		if sock, payload, from := e.lookupUDP(proto, b[header.EthernetMinimumSize:]); sock != nil {
			// Counted first: whoever sees the datagram sees it counted.
			q.ctr.rxUDPFast.Add(1)
			sock.push(payload, from, len(b))
			v.Release()
			return
		}
	}
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
	pkt.LinkHeader().Consume(header.EthernetMinimumSize) // length checked in deliver
	pkt.NetworkProtocolNumber = proto
	pkt.PktType = typ
	// GRO verifies checksums itself unless told they were.
	pkt.RXChecksumValidated = true
	q.gro.Enqueue(pkt)
	pkt.DecRef()
}

// close drains the TX ring (the kernel completes what it took) and closes
// the port.
func (q *queue) close(timeout time.Duration) error {
	q.txMu.Lock()
	q.txClosed = true
	q.txMu.Unlock()
	q.closeFast()
	var drainErr error
	deadline := time.Now().Add(timeout)
	for {
		_, _ = q.port.Transmit(nil) // kick what is left, reap completions
		st, err := q.port.Stats()
		if err != nil && !errors.Is(err, nic.ErrClosed) && st.TxPackets == 0 {
			drainErr = fmt.Errorf("stack: queue %d: stats: %w", q.idx, err)
			break
		}
		if st.TxCompleted >= st.TxPackets {
			break
		}
		if time.Now().After(deadline) {
			drainErr = fmt.Errorf("stack: queue %d: %d frames still in the kernel after %v", q.idx, st.TxPackets-st.TxCompleted, timeout)
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	return errors.Join(drainErr, q.port.Close())
}
