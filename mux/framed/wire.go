package framed

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format of framed virtual connections: one TCP connection carries
// frames, each a 9-byte header and a payload:
//
//	type (1 byte) | stream id (4 bytes, big endian) | payload length (4 bytes)
//
// The high bit of the type byte says who opened the stream: clear when the
// sender of the frame opened it, set when the receiver did. Each side thus
// numbers the streams it opens on its own, and both may open streams.
//
// Both sides start with SETTINGS. A stream lives from OPEN until each side
// has both sent and received FIN or RESET; only then does its id and its
// unit of the peer's stream limit come back. Because TCP delivers in order,
// a side that has seen both ends knows the peer has too before any later
// frame reaches it, so both sides always agree on which streams count.
//
// Each direction of a stream has a receive window (flow control as in RFC
// 9113 section 5.2): the sender never has more than the receiver's window
// unconsumed, so every receive queue is bounded and one slow reader never
// stalls the shared connection.
const (
	frameSettings byte = 1 + iota // id 0; maxStreams, window, maxFrame (3 x uint32)
	frameOpen                     // opens a stream; payload: first data, may be empty
	frameData                     // stream data
	frameFin                      // end of the sender's direction
	frameReset                    // aborts both directions; payload: code (uint32)
	frameWindow                   // payload: window increment (uint32)
	framePing                     // id 0; payload: 8 opaque bytes
	framePong                     // id 0; payload: the ping's 8 bytes
	frameGoAway                   // id 0; the sender accepts no new streams

	frameTypeMask byte = 0x7f
	// frameToOpener marks a frame sent by the side that did not open the
	// stream.
	frameToOpener byte = 0x80

	frameHeaderLen = 9
	settingsLen    = 12
)

// Reset codes carried by RESET frames.
const (
	resetCancel    uint32 = iota // the application closed the stream early
	resetRefused                 // over the receiver's stream limit, or going away
	resetFlow                    // the sender overran the receive window
	resetDuplicate               // OPEN for a stream id that is in use
	resetProtocol                // any other violation
)

var (
	// ErrFrameTooLarge is a frame longer than the receiver's maximum frame
	// size; the connection is dropped (the stream of frames cannot resync).
	ErrFrameTooLarge = errors.New("mux: frame too large")
	// ErrBadFrame is a malformed frame: unknown type, or a control frame of
	// the wrong length or on the wrong id.
	ErrBadFrame = errors.New("mux: malformed frame")
	// ErrDuplicateID is an OpenStreamID for an id in use on this side, or an
	// OPEN from the peer for one of its streams that is still open.
	ErrDuplicateID = errors.New("mux: duplicate stream id")
	// ErrStreamReset is returned by stream reads and writes after the peer
	// reset the stream; it wraps a *ResetError with the code.
	ErrStreamReset = errors.New("mux: stream reset")
	// ErrSendQueueFull is returned by writes on a connection configured to
	// drop when its send queue is full (Config.DropWhenFull).
	ErrSendQueueFull = errors.New("mux: send queue full")
	// ErrConnLost is the error of streams that were open when their TCP
	// connection failed; it wraps the cause.
	ErrConnLost = errors.New("mux: connection lost")
	// ErrReconnectFailed is the terminal error of a Dial connection
	// that gave up reconnecting; it wraps the last dial error.
	ErrReconnectFailed = errors.New("mux: reconnect failed")
	// ErrIdleTimeout is a connection that received nothing, not even a
	// keep-alive answer, for the idle timeout. It wraps
	// os.ErrDeadlineExceeded.
	ErrIdleTimeout = fmt.Errorf("mux: idle timeout: %w", errDeadline)
)

// ResetError is a RESET received from the peer or sent by this side.
type ResetError struct {
	Code   uint32
	Remote bool
}

func (e *ResetError) Error() string {
	side := "local"
	if e.Remote {
		side = "remote"
	}
	return fmt.Sprintf("mux: stream reset by %s side (%s)", side, resetCodeName(e.Code))
}

// Unwrap makes every ResetError match ErrStreamReset.
func (e *ResetError) Unwrap() error { return ErrStreamReset }

func resetCodeName(code uint32) string {
	switch code {
	case resetCancel:
		return "cancel"
	case resetRefused:
		return "refused"
	case resetFlow:
		return "flow control"
	case resetDuplicate:
		return "duplicate id"
	case resetProtocol:
		return "protocol error"
	default:
		return fmt.Sprintf("code %d", code)
	}
}

type frameHeader struct {
	typ      byte // without frameToOpener
	toOpener bool
	id       uint32
	length   uint32
}

func (h frameHeader) put(b []byte) {
	t := h.typ
	if h.toOpener {
		t |= frameToOpener
	}
	b[0] = t
	binary.BigEndian.PutUint32(b[1:5], h.id)
	binary.BigEndian.PutUint32(b[5:9], h.length)
}

func parseFrameHeader(b []byte, maxFrame int) (frameHeader, error) {
	h := frameHeader{
		typ:      b[0] & frameTypeMask,
		toOpener: b[0]&frameToOpener != 0,
		id:       binary.BigEndian.Uint32(b[1:5]),
		length:   binary.BigEndian.Uint32(b[5:9]),
	}
	var want int // fixed payload length; -1 any
	switch h.typ {
	case frameSettings:
		want = settingsLen
	case frameOpen, frameData:
		want = -1
	case frameFin, frameGoAway:
		want = 0
	case frameReset, frameWindow:
		want = 4
	case framePing, framePong:
		want = 8
	default:
		return h, fmt.Errorf("%w: unknown type %#x", ErrBadFrame, b[0])
	}
	if h.length > uint32(maxFrame) {
		return h, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, h.length, maxFrame)
	}
	if want >= 0 && h.length != uint32(want) {
		return h, fmt.Errorf("%w: type %d with %d-byte payload", ErrBadFrame, h.typ, h.length)
	}
	connLevel := h.typ == frameSettings || h.typ == framePing || h.typ == framePong || h.typ == frameGoAway
	if connLevel != (h.id == 0) {
		return h, fmt.Errorf("%w: type %d on stream id %d", ErrBadFrame, h.typ, h.id)
	}
	return h, nil
}
