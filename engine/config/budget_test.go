package config

import (
	"strings"
	"testing"
	"time"
)

// goodConfig has 3 ports (queues) of 8192 frames of 2048 bytes: 48 MiB of
// UMEM.
func TestBuffersMemory(t *testing.T) {
	for _, tc := range []struct {
		edit        string
		wantPayload int64
		wantErr     string
	}{
		{"", DefaultPayloadMemory, ""},
		{"buffers: {memory: 64MiB, tcp_receive: {default: 64KiB, max: 64KiB}, tcp_send: {default: 64KiB, max: 64KiB}, quic_receive: {max: 64KiB}}\n", 16 << 20, ""},
		{"buffers: {memory: 52428800, tcp_receive: {default: 64KiB, max: 64KiB}, tcp_send: {default: 64KiB, max: 64KiB}, quic_receive: {max: 64KiB}}\n", 52428800 - 48<<20, ""},
		// The engine runs QUIC connections (goodConfig's h3 frontend and
		// backends): room for one beside two payload buffers.
		{"buffers: {memory: 64MiB, tcp_receive: {default: 64KiB, max: 64KiB}, tcp_send: {default: 64KiB, max: 64KiB}}\n", 0, "buffers.memory: 67108864 bytes: the UMEM takes 50331648; at least 16842752 more are needed for two payload buffers and one QUIC connection"},
		{"buffers: {quic_receive: {default: 8KiB}}\n", 0, "buffers.quic_receive: default 8192, max 8388608: want 16384 <= default"},
		{"buffers: {quic_receive: {default: 1MiB, max: 512KiB}}\n", 0, "buffers.quic_receive: default 1048576, max 524288"},
		{"buffers: {quic_send: 2GiB}\n", 0, "buffers.quic_send: 2147483648 is outside 0..1073741824"},
		{"buffers: {memory: 64MiB}\n", 0, "buffers.memory: 67108864 bytes: the UMEM alone takes 50331648 (ports × frames × frame_size); at least 16842752 more"},
		{"buffers: {accept_wait: -1s}\n", 0, "buffers.accept_wait: -1s must not be negative"},
		{"buffers: {memory: 1GB}\n", 1e9 - 48<<20, ""},
		{"buffers: {memory: 10MiB}\n", 0, "buffers.memory: 10485760 bytes: the UMEM alone takes 50331648"},
		{"buffers: {memory: lots}\n", 0, `"lots" is not a size`},
		{"buffers: {memory: -1MiB}\n", 0, `"-1MiB" is not a size`},
		{"buffers: {wait: -1s}\n", 0, "buffers.wait: -1s must not be negative"},
		{"buffers: {tx_wait: -1ms}\n", 0, "buffers.tx_wait: -1ms is outside 0..1s"},
		{"buffers: {tx_wait: 2s}\n", 0, "buffers.tx_wait: 2s is outside 0..1s"},
		{"buffers: {tcp_receive: {default: 64KiB, max: 32KiB}}\n", 0, "buffers.tcp_receive: default 65536, max 32768"},
		{"buffers: {tcp_send: {default: 1KiB}}\n", 0, "buffers.tcp_send: default 1024"},
		{"buffers: {tcp_send: {max: 2GiB}}\n", 0, "buffers.tcp_send: default 1048576, max 2147483648"},
	} {
		c, err := Parse([]byte(goodConfig + tc.edit))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.edit, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.edit, err)
			continue
		}
		if got := c.PayloadMemory(); got != tc.wantPayload {
			t.Errorf("%q: payload allowance %d, want %d", tc.edit, got, tc.wantPayload)
		}
		if c.Buffers.Wait.D().Seconds() != 5 || c.Buffers.AcceptWait.D().Seconds() != 1 {
			t.Errorf("buffers.wait default %v, accept_wait %v, want 5s and 1s", c.Buffers.Wait.D(), c.Buffers.AcceptWait.D())
		}
		if r := c.TCPReservation(); !strings.Contains(tc.edit, "tcp_") && r != 16<<20 {
			t.Errorf("%q: TCP reservation %d, want tcp_receive.max + tcp_send.max (16 MiB)", tc.edit, r)
		}
	}
}

// The TCP buffer keys reach the data plane's netstack options, with the
// stack's defaults where unset (stack.New applies them: its options test).
func TestTCPBufferKeys(t *testing.T) {
	c, err := Parse([]byte(goodConfig + "buffers: {tcp_receive: {default: 64KiB, max: 256KiB}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	dp := c.DataPlane()
	if r := dp.TCPReceiveBuffer; r.Min != 4<<10 || r.Default != 64<<10 || r.Max != 256<<10 {
		t.Errorf("receive range %+v", r)
	}
	if s := dp.TCPSendBuffer; s.Min != 4<<10 || s.Default != 1<<20 || s.Max != 8<<20 {
		t.Errorf("send range %+v, want the defaults", s)
	}
	if dp.TXWait != 0 {
		t.Errorf("tx wait %v, want 0 (the stack's default)", dp.TXWait)
	}
	if c, err = Parse([]byte(goodConfig + "buffers: {tx_wait: 10ms}\n")); err != nil {
		t.Fatal(err)
	}
	if got := c.DataPlane().TXWait; got != 10*time.Millisecond {
		t.Errorf("buffers.tx_wait 10ms reached the data plane as %v", got)
	}
}

// buffers.quic_receive and quic_send set the QUIC connections' windows and
// reservation; a stream's window stays quic-go's within the connection's.
func TestQUICBufferKeys(t *testing.T) {
	for _, tc := range []struct {
		edit string
		want QUICWindows
		res  int64
	}{
		{"", QUICWindows{Stream: 512 << 10, StreamMax: 6 << 20, Conn: 512 << 10, ConnMax: 8 << 20}, 16 << 20},
		{"buffers: {quic_receive: {max: 64KiB}}\n", QUICWindows{Stream: 64 << 10, StreamMax: 64 << 10, Conn: 64 << 10, ConnMax: 64 << 10}, 128 << 10},
		{"buffers: {quic_receive: {default: 1MiB, max: 32MiB}, quic_send: 4MiB}\n", QUICWindows{Stream: 512 << 10, StreamMax: 6 << 20, Conn: 1 << 20, ConnMax: 32 << 20}, 36 << 20},
		{"buffers: {quic_receive: {default: 32KiB, max: 96KiB}, quic_send: 32KiB}\n", QUICWindows{Stream: 32 << 10, StreamMax: 96 << 10, Conn: 32 << 10, ConnMax: 96 << 10}, 128 << 10},
	} {
		c, err := Parse([]byte(goodConfig + tc.edit))
		if err != nil {
			t.Fatalf("%q: %v", tc.edit, err)
		}
		if got := c.QUICWindows(); got != tc.want {
			t.Errorf("%q: windows %+v, want %+v", tc.edit, got, tc.want)
		}
		if got := c.QUICReservation(); got != tc.res {
			t.Errorf("%q: reservation %d, want %d", tc.edit, got, tc.res)
		}
	}
}
