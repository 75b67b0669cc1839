package quicmux

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/mux/internal/testenv"
)

// recordingPacketConn records the datagrams written to it.
type recordingPacketConn struct {
	net.PacketConn // nil: only what boundedPacketConn calls is implemented
	writes         [][]byte
}

func (r *recordingPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	r.writes = append(r.writes, bytes.Clone(b))
	return len(b), nil
}
func (r *recordingPacketConn) SetWriteDeadline(time.Time) error { return nil }
func (r *recordingPacketConn) Close() error                     { return nil }

// cmsg encodes one control message as the kernel lays it out.
func cmsg(t *testing.T, level, typ int32, data []byte) []byte {
	t.Helper()
	h := unix.Cmsghdr{Level: level, Type: typ}
	h.SetLen(unix.CmsgLen(len(data)))
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, &h); err != nil {
		t.Fatal(err)
	}
	if b.Len() != unix.CmsgLen(0) {
		t.Fatalf("cmsghdr encodes to %d bytes, want %d", b.Len(), unix.CmsgLen(0))
	}
	b.Write(data)
	b.Write(make([]byte, unix.CmsgSpace(len(data))-unix.CmsgLen(len(data))))
	return b.Bytes()
}

func segmentSize(t *testing.T, n uint16) []byte {
	return cmsg(t, unix.IPPROTO_UDP, unix.UDP_SEGMENT, binary.NativeEndian.AppendUint16(nil, n))
}

// TestSegmentingWriteMsgUDP: WriteMsgUDP cuts a buffer as the kernel's UDP
// GSO does, ignores control messages it does not act on, and refuses
// malformed ones without writing anything.
func TestSegmentingWriteMsgUDP(t *testing.T) {
	var dropped atomic.Uint64
	rec := &recordingPacketConn{}
	p, err := newSegmentingPacketConn(&boundedPacketConn{PacketConn: rec, dropped: &dropped})
	if err != nil {
		t.Fatal(err)
	}
	to := &net.UDPAddr{IP: net.IPv4(198, 18, 2, 10), Port: 443}
	b := make([]byte, 250)
	for i := range b {
		b[i] = byte(i)
	}
	ecn := cmsg(t, unix.IPPROTO_IP, unix.IP_TOS, []byte{2})
	for _, tc := range []struct {
		name  string
		oob   []byte
		sizes []int
		bad   bool
	}{
		{"segments", segmentSize(t, 100), []int{100, 100, 50}, false},
		{"segments and ECN", append(ecn, segmentSize(t, 125)...), []int{125, 125}, false},
		{"segment larger than the buffer", segmentSize(t, 1000), []int{250}, false},
		{"no control message", nil, []int{250}, false},
		{"ECN only", ecn, []int{250}, false},
		{"truncated header", segmentSize(t, 100)[:8], nil, true},
		{"short UDP_SEGMENT", cmsg(t, unix.IPPROTO_UDP, unix.UDP_SEGMENT, []byte{1}), nil, true},
	} {
		rec.writes = nil
		n, _, err := p.WriteMsgUDP(b, tc.oob, to)
		if tc.bad {
			if err == nil || len(rec.writes) != 0 {
				t.Errorf("%s: err %v after %d writes, want an error and none", tc.name, err, len(rec.writes))
			}
			continue
		}
		if err != nil || n != len(b) {
			t.Errorf("%s: n %d err %v", tc.name, n, err)
			continue
		}
		var sizes []int
		for _, w := range rec.writes {
			sizes = append(sizes, len(w))
		}
		if !slices.Equal(sizes, tc.sizes) || !bytes.Equal(bytes.Join(rec.writes, nil), b) {
			t.Errorf("%s: wrote datagrams of %v, want %v, in order", tc.name, sizes, tc.sizes)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.probe.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("placeholder socket still open after Close: %v", err)
	}
}

// TestQUICBatchedSends: on a socket that is not the kernel's, quic-go hands
// mux bursts of packets in one call (segmentingPacketConn), and they arrive
// intact. On kernel sockets quic-go batches by itself: nothing to check.
func TestQUICBatchedSends(t *testing.T) {
	testenv.CheckGoroutines(t)
	cli, srv, ctr := quicPairTransport(t, ALPNRaw, Config{}, Config{InitialPacketSize: 1200})
	seg := ctr.seg
	if seg == nil {
		t.Skip("kernel UDP socket: quic-go batches its sends itself")
	}
	echoStreams(t, srv)
	msg := make([]byte, 1<<20)
	rand.Read(msg)
	s, err := cli.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, s, msg)
	calls, datagrams := seg.calls.Load(), seg.datagrams.Load()
	if datagrams <= calls {
		t.Fatalf("%d datagrams in %d calls: quic-go did not batch", datagrams, calls)
	}
	t.Logf("%d datagrams in %d calls", datagrams, calls)
}
