package benchsuite

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/pktgen"
)

var testFlow = Flow{
	SrcMAC: net.HardwareAddr{2, 0, 0, 0, 1, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 1, 1},
	Src: netip.MustParseAddr("198.18.1.2"), Dst: netip.MustParseAddr("198.18.1.1"),
	SrcPort: benchSrcPort, DstPort: benchDstPort,
}

func TestFrame(t *testing.T) {
	for _, size := range RFC2544FrameSizes {
		f, err := testFlow.Frame(size)
		if err != nil {
			t.Fatal(err)
		}
		if len(f) != size-FCSLen {
			t.Errorf("size %d: %d bytes", size, len(f))
		}
		if pktgen.Checksum(f[ethLen:ethLen+ipv4Len], 0) != 0 {
			t.Errorf("size %d: bad IPv4 header checksum", size)
		}
		if !udpChecksumOK(f) {
			t.Errorf("size %d: bad UDP checksum", size)
		}
		if _, ok := probeStamp(f); ok {
			t.Errorf("size %d: load frame reads as a probe", size)
		}
		p := stampProbe(f, 1234*time.Microsecond)
		if d, ok := probeStamp(p); !ok || d != 1234*time.Microsecond || !udpChecksumOK(p) {
			t.Errorf("size %d: probe %v %v checksum ok %v", size, d, ok, udpChecksumOK(p))
		}
		if d, ok := probePayload(p[payloadOff:]); !ok || d != 1234*time.Microsecond {
			t.Errorf("size %d: probe payload %v %v", size, d, ok)
		}
	}
	for _, size := range []int{0, 60, 9005} {
		if _, err := testFlow.Frame(size); err == nil {
			t.Errorf("accepted frame size %d", size)
		}
	}
	v6 := testFlow
	v6.Dst = netip.MustParseAddr("2001:2:0:1::1")
	if _, err := v6.Frame(64); err == nil {
		t.Error("accepted an IPv6 destination")
	}
	if _, ok := probeStamp([]byte{1, 2, 3}); ok {
		t.Error("short frame read as a probe")
	}
}

func udpChecksumOK(f []byte) bool {
	ip := f[ethLen:]
	udp := ip[ipv4Len:]
	var sum uint32
	for i := 12; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	sum += 17 + uint32(len(udp))
	return pktgen.Checksum(udp, sum) == 0
}

// countingSender counts what pace asks it to send.
type countingSender struct {
	frames, probes uint64
	calls          int
}

func (c *countingSender) Send(_ context.Context, frame []byte, n uint64) (uint64, error) {
	c.calls++
	if _, ok := probeStamp(frame); ok {
		c.probes += n
	} else {
		c.frames += n
	}
	return n, nil
}

func TestPace(t *testing.T) {
	f, err := testFlow.Frame(64)
	if err != nil {
		t.Fatal(err)
	}
	var s countingSender
	probe := func(d time.Duration) []byte { return stampProbe(f, d) }
	const rate = 200000
	sent, elapsed, err := pace(context.Background(), &s, f, rate, 20*time.Millisecond, probe, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if sent != s.frames+s.probes || s.probes == 0 || s.frames == 0 {
		t.Errorf("sent %d: %d frames, %d probes", sent, s.frames, s.probes)
	}
	// Pacing never runs ahead of the rate by more than one slot's burst.
	if limit := uint64(rate*elapsed.Seconds()) + 1 + uint64(rate*paceSlot.Seconds()) + s.probes; s.frames > limit {
		t.Errorf("%d frames in %v at %d fps: over %d", s.frames, elapsed, rate, limit)
	}

	// A rate too low for one frame per trial still sends the first one.
	var slow countingSender
	if sent, _, err := pace(context.Background(), &slow, f, 1, 5*time.Millisecond, nil, time.Now()); err != nil || sent != 1 {
		t.Errorf("1 fps for 5ms: sent %d, %v", sent, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := pace(ctx, &s, f, 0, time.Minute, nil, time.Now()); err == nil {
		t.Error("cancelled pace returned no error")
	}
}
