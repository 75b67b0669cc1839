package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// hdr builds a header from its parts: version/command byte, family/
// transport byte, and body; the length is body's.
func hdr(verCmd, famProto byte, body []byte) []byte {
	b := append(Signature[:], verCmd, famProto)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func v4body() []byte {
	return []byte{198, 18, 1, 77, 198, 18, 1, 1, 0x10, 0x92, 0x1F, 0x90} // :4242 -> :8080
}

func TestReadValid(t *testing.T) {
	v6 := append(netip.MustParseAddr("2001:2:0:1::77").AsSlice(), netip.MustParseAddr("2001:2:0:1::1").AsSlice()...)
	v6 = append(v6, 0x10, 0x92, 0x1F, 0x90)
	tlv := []byte{0x04, 0x00, 0x02, 'x', 'y', 0xEE, 0x00, 0x00} // a NOOP with 2 bytes, an unknown empty one
	for _, tc := range []struct {
		name     string
		in       []byte
		cmd      Command
		src, dst string
	}{
		{"tcp4", hdr(0x21, 0x11, v4body()), Proxy, "198.18.1.77:4242", "198.18.1.1:8080"},
		{"udp4", hdr(0x21, 0x12, v4body()), Proxy, "198.18.1.77:4242", "198.18.1.1:8080"},
		{"tcp6", hdr(0x21, 0x21, v6), Proxy, "[2001:2:0:1::77]:4242", "[2001:2:0:1::1]:8080"},
		{"tcp4 with TLVs", hdr(0x21, 0x11, append(v4body(), tlv...)), Proxy, "198.18.1.77:4242", "198.18.1.1:8080"},
		{"local", hdr(0x20, 0x00, nil), Local, "", ""},
		{"local with addresses", hdr(0x20, 0x11, v4body()), Local, "", ""},
		{"unspec", hdr(0x21, 0x00, nil), Proxy, "", ""},
		{"unix", hdr(0x21, 0x31, make([]byte, 216)), Proxy, "", ""},
		{"inet, unspec transport", hdr(0x21, 0x10, v4body()), Proxy, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := append(tc.in, "GET / HTTP/1.1\r\n"...)
			r := bytes.NewReader(data)
			h, err := Read(r)
			if err != nil {
				t.Fatal(err)
			}
			if h.Command != tc.cmd || addr(h.Source) != tc.src || addr(h.Destination) != tc.dst {
				t.Errorf("got %+v, want %v %s -> %s", h, tc.cmd, tc.src, tc.dst)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "GET / HTTP/1.1\r\n" {
				t.Errorf("read into the payload: %q left", rest)
			}
		})
	}
}

func addr(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func TestReadMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"v1 text", []byte("PROXY TCP4 198.18.1.77 198.18.1.1 4242 8080\r\n"), ErrNoSignature},
		{"http", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), ErrNoSignature},
		{"signature cut", Signature[:7], io.ErrUnexpectedEOF},
		{"no length", Signature[:], io.ErrUnexpectedEOF},
		{"body cut", hdr(0x21, 0x11, v4body())[:20], io.ErrUnexpectedEOF},
		{"version 1", hdr(0x11, 0x11, v4body()), ErrMalformed},
		{"version 3", hdr(0x31, 0x11, v4body()), ErrMalformed},
		{"command 2", hdr(0x22, 0x11, v4body()), ErrMalformed},
		{"command 15", hdr(0x2F, 0x11, v4body()), ErrMalformed},
		{"family 4", hdr(0x21, 0x41, v4body()), ErrMalformed},
		{"transport 3", hdr(0x21, 0x13, v4body()), ErrMalformed},
		{"inet short", hdr(0x21, 0x11, v4body()[:11]), ErrMalformed},
		{"inet6 with inet length", hdr(0x21, 0x21, v4body()), ErrMalformed},
		{"unix short", hdr(0x21, 0x31, make([]byte, 215)), ErrMalformed},
		{"TLV header cut", hdr(0x21, 0x11, append(v4body(), 0x04, 0x00)), ErrMalformed},
		{"TLV overruns", hdr(0x21, 0x11, append(v4body(), 0x04, 0x00, 0x05, 'x')), ErrMalformed},
		{"local, TLV overruns", hdr(0x20, 0x00, []byte{0x04, 0xFF, 0xFF}), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.in))
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAppendRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Command: Proxy, Source: netip.MustParseAddrPort("198.18.1.77:4242"), Destination: netip.MustParseAddrPort("198.18.1.1:8080")},
		{Command: Proxy, Source: netip.MustParseAddrPort("[2001:2:0:1::77]:1"), Destination: netip.MustParseAddrPort("[2001:2:0:1::1]:65535")},
		{Command: Local},
		{Command: Proxy}, // no addresses: UNSPEC
	} {
		b := h.Append(nil)
		got, err := Read(bytes.NewReader(b))
		if err != nil || got != h {
			t.Errorf("%+v: read back %+v, %v (% x)", h, got, err, b)
		}
	}
	// Mixed families go as IPv6 (the IPv4 one mapped).
	h := Header{Command: Proxy, Source: netip.MustParseAddrPort("198.18.1.77:4242"), Destination: netip.MustParseAddrPort("[2001:2:0:1::1]:80")}
	got, err := Read(bytes.NewReader(h.Append(nil)))
	if err != nil || got.Source.Addr().Unmap() != h.Source.Addr() || got.Destination != h.Destination {
		t.Errorf("mixed: %+v, %v", got, err)
	}
}

// Random corruptions of valid headers never panic, never read past the
// length the header announces, and either decode or fail with one of the
// package's errors or a short read.
func TestReadCorrupted(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seeds := [][]byte{
		hdr(0x21, 0x11, v4body()),
		hdr(0x21, 0x21, make([]byte, 36)),
		hdr(0x21, 0x11, append(v4body(), 0x04, 0x00, 0x02, 'x', 'y')),
		hdr(0x20, 0x00, nil),
	}
	for i := range 20000 {
		b := bytes.Clone(seeds[i%len(seeds)])
		for range 1 + rng.IntN(3) {
			switch rng.IntN(3) {
			case 0: // flip a byte
				if len(b) > 0 {
					b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
				}
			case 1: // cut
				b = b[:rng.IntN(len(b)+1)]
			case 2: // grow the announced length
				if len(b) >= 16 {
					binary.BigEndian.PutUint16(b[14:], uint16(rng.IntN(300)))
				}
			}
		}
		const tail = "PAYLOAD"
		r := bytes.NewReader(append(b, tail...))
		_, err := Read(r)
		if err != nil && !errors.Is(err, ErrNoSignature) && !errors.Is(err, ErrMalformed) &&
			!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("% x: unexpected error %v", b, err)
		}
		if err == nil || errors.Is(err, ErrMalformed) {
			// A header was read whole: exactly 16 + its length.
			if n := len(b) + len(tail) - r.Len(); len(b) >= 16 && n != 16+int(binary.BigEndian.Uint16(b[14:])) {
				t.Fatalf("% x: read %d bytes", b, n)
			}
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add(hdr(0x21, 0x11, v4body()))
	f.Add(hdr(0x20, 0x00, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		unmap := func(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
		got, err := Read(bytes.NewReader(h.Append(nil)))
		if err != nil || got.Command != h.Command || unmap(got.Source) != unmap(h.Source) || unmap(got.Destination) != unmap(h.Destination) {
			t.Errorf("%+v did not survive Append: %+v, %v", h, got, err)
		}
	})
}
