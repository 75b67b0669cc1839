package framed

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/mux"
)

// framedStream is one virtual connection of a Conn.
type framedStream struct {
	s     *framedSession
	id    uint32
	local bool // opened by this side

	// Set by the writer goroutine only (see writeLoop): openWritten once
	// its OPEN is on the wire; reset once a RESET was decided, after which
	// the writer drops the stream's queued frames so that the RESET is the
	// last frame of the stream on the wire.
	openWritten atomic.Bool
	reset       atomic.Bool

	// writeMu serialises Write and CloseWrite, as on a net.Conn.
	writeMu sync.Mutex

	mu sync.Mutex
	// recv holds received payloads in order; recvBufs their pool buffers.
	// recvBytes is bounded by the stream window (the peer's flow control).
	recv      [][]byte
	recvBufs  []*[]byte
	recvBytes int
	// unacked bytes were consumed and not yet returned with WINDOW.
	unacked  int
	recvFin  bool  // FIN received: EOF after the queued data
	recvDone bool  // FIN or RESET received, or connection lost
	readErr  error // reads fail with it at once
	sendWin  int
	// sendClosed: FIN or RESET queued; writes fail with writeErr.
	sendClosed bool
	writeErr   error
	released   bool
	readSig    chan struct{}
	writeSig   chan struct{}
	rd, wd     deadline
}

var _ mux.Stream = (*framedStream)(nil)

func newFramedStream(s *framedSession, id uint32, local bool) *framedStream {
	return &framedStream{
		s:        s,
		id:       id,
		local:    local,
		sendWin:  s.peerWindow,
		readSig:  make(chan struct{}, 1),
		writeSig: make(chan struct{}, 1),
		rd:       newDeadline(),
		wd:       newDeadline(),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// hdr is a frame header for this stream, marked for the opener when this
// side did not open it.
func (st *framedStream) hdr(typ byte, n int) frameHeader {
	return frameHeader{typ: typ, toOpener: !st.local, id: st.id, length: uint32(n)}
}

// deliver queues a received payload (owned by buf) for Read.
func (st *framedStream) deliver(p []byte, buf *[]byte) {
	st.mu.Lock()
	if st.recvDone || st.readErr != nil {
		// Data after a local reset, before the peer saw it: discard.
		st.mu.Unlock()
		putBuf(buf)
		return
	}
	if st.recvBytes+len(p) > st.s.c.cfg.StreamWindow {
		st.mu.Unlock()
		putBuf(buf)
		st.resetLocal(resetFlow, fmt.Errorf("%w: peer overran the receive window", ErrStreamReset))
		return
	}
	st.recv = append(st.recv, p)
	st.recvBufs = append(st.recvBufs, buf)
	st.recvBytes += len(p)
	st.mu.Unlock()
	signal(st.readSig)
}

func putBuf(buf *[]byte) {
	if buf != nil {
		framePool.Put(buf)
	}
}

func (st *framedStream) recvFinFrame() {
	st.mu.Lock()
	st.recvFin = true
	st.recvDone = true
	done := st.sendClosed
	st.mu.Unlock()
	signal(st.readSig)
	if done {
		st.release()
	}
}

// recvReset handles the peer's RESET: both directions end; if this side's
// direction was still open, it answers with RESET so that the peer knows
// no more frames of the stream will come.
func (st *framedStream) recvReset(code uint32) {
	err := &ResetError{Code: code, Remote: true}
	st.mu.Lock()
	st.recvDone = true
	st.readErr = err
	answer := !st.sendClosed
	if answer {
		st.sendClosed = true
		st.writeErr = err
	}
	st.dropRecvLocked()
	st.mu.Unlock()
	signal(st.readSig)
	signal(st.writeSig)
	if answer {
		st.sendReset(resetCancel)
	}
	st.release()
}

// resetLocal aborts the stream from this side with code; later reads and
// writes fail with err.
func (st *framedStream) resetLocal(code uint32, err error) {
	st.mu.Lock()
	if st.readErr == nil {
		st.readErr = err
	}
	wasClosed := st.sendClosed
	st.sendClosed = true
	if st.writeErr == nil {
		st.writeErr = err
	}
	recvDone := st.recvDone
	st.dropRecvLocked()
	st.mu.Unlock()
	signal(st.readSig)
	signal(st.writeSig)
	if !wasClosed {
		st.sendReset(code)
	}
	if recvDone {
		st.release()
	}
}

func (st *framedStream) sendReset(code uint32) {
	st.s.c.resetsSent.Add(1)
	f := resetFrame(st.id, !st.local, code)
	f.st = st
	st.reset.Store(true)
	st.s.sendCtrl(f)
}

// dropRecvLocked frees queued data; st.mu held.
func (st *framedStream) dropRecvLocked() {
	for _, b := range st.recvBufs {
		putBuf(b)
	}
	st.recv, st.recvBufs, st.recvBytes = nil, nil, 0
}

// connFailed ends the stream with the connection's error.
func (st *framedStream) connFailed(err error) {
	st.mu.Lock()
	if st.readErr == nil && !st.recvFin {
		st.readErr = err
	}
	if st.writeErr == nil {
		st.writeErr = err
	}
	st.recvDone, st.sendClosed, st.released = true, true, true
	st.mu.Unlock()
	signal(st.readSig)
	signal(st.writeSig)
}

func (st *framedStream) addWindow(n int) {
	st.mu.Lock()
	st.sendWin += n
	st.mu.Unlock()
	signal(st.writeSig)
}

// abandon forgets a stream whose OPEN never reached the wire.
func (st *framedStream) abandon() {
	st.mu.Lock()
	st.recvDone = true
	st.mu.Unlock()
	st.release()
}

// release returns the stream's id and credit once both directions ended.
func (st *framedStream) release() {
	st.mu.Lock()
	if st.released {
		st.mu.Unlock()
		return
	}
	// Unread data stays readable: release is about the wire, not the reader.
	st.released = true
	st.mu.Unlock()
	c, s := st.s.c, st.s
	key := streamKey{id: st.id, local: st.local}
	c.mu.Lock()
	if s.streams == nil || s.streams[key] != st {
		c.mu.Unlock()
		return
	}
	delete(s.streams, key)
	if st.local {
		s.opened--
	} else {
		s.accepted--
	}
	if c.idle != nil && s.opened+s.accepted == 0 {
		close(c.idle)
		c.idle = nil
	}
	notify := st.local && c.availLocked() > 0
	if notify {
		c.wakeLocked()
	}
	c.mu.Unlock()
	if notify {
		c.notifyCredit()
	}
}

func (st *framedStream) Read(p []byte) (int, error) {
	for {
		st.mu.Lock()
		if st.readErr != nil {
			err := st.readErr
			st.mu.Unlock()
			return 0, err
		}
		if len(st.recv) > 0 {
			n := 0
			for n < len(p) && len(st.recv) > 0 {
				m := copy(p[n:], st.recv[0])
				n += m
				if m == len(st.recv[0]) {
					putBuf(st.recvBufs[0])
					st.recv[0], st.recvBufs[0] = nil, nil
					st.recv, st.recvBufs = st.recv[1:], st.recvBufs[1:]
				} else {
					st.recv[0] = st.recv[0][m:]
				}
			}
			st.recvBytes -= n
			st.unacked += n
			var inc int
			// Return credit in batches of half a window; none once the
			// peer finished (it sends nothing more).
			if !st.recvDone && st.unacked >= st.s.c.cfg.StreamWindow/2 {
				inc, st.unacked = st.unacked, 0
			}
			st.mu.Unlock()
			if inc > 0 {
				b := make([]byte, 4)
				binary.BigEndian.PutUint32(b, uint32(inc))
				st.s.sendCtrl(outFrame{hdr: st.hdr(frameWindow, 4), payload: b, st: st})
			}
			return n, nil
		}
		if st.recvFin {
			st.mu.Unlock()
			return 0, io.EOF
		}
		dl := st.rd.wait()
		st.mu.Unlock()
		select {
		case <-st.readSig:
		case <-dl:
			return 0, st.opErr("read", errDeadline)
		}
	}
}

func (st *framedStream) Write(p []byte) (int, error) {
	return st.WriteContext(context.Background(), p)
}

// WriteContext writes p, waiting for flow-control window and send-queue
// room until ctx ends or the write deadline passes. With
// Config.DropWhenFull a full send queue fails the write at once with
// ErrSendQueueFull; the bytes counted in n were queued.
func (st *framedStream) WriteContext(ctx context.Context, p []byte) (int, error) {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	n := 0
	for n < len(p) {
		st.mu.Lock()
		if st.sendClosed {
			err := st.writeErr
			st.mu.Unlock()
			if err == nil {
				err = net.ErrClosed
			}
			return n, st.opErr("write", err)
		}
		dl := st.wd.wait()
		if st.sendWin == 0 {
			st.mu.Unlock()
			select {
			case <-st.writeSig:
				continue
			case <-dl:
				return n, st.opErr("write", errDeadline)
			case <-ctx.Done():
				return n, st.opErr("write", ctx.Err())
			}
		}
		chunk := min(len(p)-n, st.sendWin, st.s.peerMaxFrame)
		st.sendWin -= chunk
		st.mu.Unlock()
		buf := getFrameBuf(chunk)
		copy(*buf, p[n:n+chunk])
		f := outFrame{hdr: st.hdr(frameData, chunk), payload: *buf, buf: buf, st: st}
		if err := st.s.sendData(ctx, dl, f, true); err != nil {
			framePool.Put(buf)
			st.mu.Lock()
			st.sendWin += chunk
			st.mu.Unlock()
			return n, st.opErr("write", err)
		}
		n += chunk
	}
	return n, nil
}

// CloseWrite sends FIN after the data written; reads go on.
func (st *framedStream) CloseWrite() error {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	st.mu.Lock()
	if st.sendClosed {
		st.mu.Unlock()
		return nil
	}
	dl := st.wd.wait()
	st.mu.Unlock()
	// FIN goes in order behind the data and is never dropped.
	if err := st.s.sendData(context.Background(), dl, outFrame{hdr: st.hdr(frameFin, 0), st: st}, false); err != nil {
		return st.opErr("close", err)
	}
	st.mu.Lock()
	st.sendClosed = true
	st.writeErr = fmt.Errorf("mux: write after CloseWrite: %w", net.ErrClosed)
	done := st.recvDone
	st.mu.Unlock()
	signal(st.writeSig)
	if done {
		st.release()
	}
	return nil
}

// Close ends both directions. After the peer's FIN it sends FIN (a
// graceful close); before it, RESET, as TCP sends RST when closed with the
// peer still sending.
func (st *framedStream) Close() error {
	st.mu.Lock()
	recvDone := st.recvDone
	st.mu.Unlock()
	if recvDone {
		err := st.CloseWrite()
		st.mu.Lock()
		if st.readErr == nil {
			st.readErr = fmt.Errorf("mux: read after Close: %w", net.ErrClosed)
		}
		st.dropRecvLocked()
		st.mu.Unlock()
		return err
	}
	st.resetLocal(resetCancel, fmt.Errorf("mux: stream closed: %w", net.ErrClosed))
	return nil
}

func (st *framedStream) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "framed", Source: st.LocalAddr(), Addr: st.RemoteAddr(), Err: err}
}

// Reset aborts both directions (a RESET frame with resetCancel); blocked
// reads and writes return ErrStreamReset.
func (st *framedStream) Reset() error {
	st.resetLocal(resetCancel, fmt.Errorf("%w: reset by this side", ErrStreamReset))
	return nil
}

func (st *framedStream) ID() uint64           { return uint64(st.id) }
func (st *framedStream) LocalAddr() net.Addr  { return st.s.nc.LocalAddr() }
func (st *framedStream) RemoteAddr() net.Addr { return st.s.nc.RemoteAddr() }

func (st *framedStream) SetDeadline(t time.Time) error {
	st.rd.set(t)
	st.wd.set(t)
	return nil
}

func (st *framedStream) SetReadDeadline(t time.Time) error {
	st.rd.set(t)
	return nil
}

func (st *framedStream) SetWriteDeadline(t time.Time) error {
	st.wd.set(t)
	return nil
}

// deadline is a settable deadline: wait returns a channel closed when it
// passes.
type deadline struct {
	mu    *sync.Mutex
	timer *time.Timer
	ch    chan struct{}
}

func newDeadline() deadline {
	return deadline{mu: new(sync.Mutex), ch: make(chan struct{})}
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		// Fired already: the old channel is closed.
		d.ch = make(chan struct{})
	}
	d.timer = nil
	select {
	case <-d.ch:
		d.ch = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	if dur := time.Until(t); dur > 0 {
		ch := d.ch
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	close(d.ch)
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

var _ = errors.New
