package proxyproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Signature opens every version 2 header (section 2.2).
var Signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// Command is the low nibble of the 13th byte.
type Command uint8

const (
	// Local: the connection was made by the proxy itself (health
	// checks); the receiver uses the connection's real addresses.
	Local Command = 0x0
	// Proxy: the connection is relayed for a client; the addresses are
	// the client's (source) and the one it connected to (destination).
	Proxy Command = 0x1
)

const (
	version2 = 0x20

	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3

	protoUnspec = 0x0
	protoStream = 0x1
	protoDgram  = 0x2

	// MaxLen is the longest header: 16 fixed bytes and a 16-bit length.
	MaxLen = 16 + 0xFFFF
)

var (
	// ErrNoSignature: the first 12 bytes are not the version 2
	// signature (no header, or a version 1 one).
	ErrNoSignature = errors.New("proxyproto: no PROXY protocol v2 signature")
	// ErrMalformed: the signature is there but the rest is not a valid
	// version 2 header.
	ErrMalformed = errors.New("proxyproto: malformed PROXY protocol v2 header")
)

// Header is a decoded header.
type Header struct {
	Command Command
	// Source and Destination are the relayed connection's addresses:
	// valid only for a Proxy command over TCP or UDP on IPv4 or IPv6.
	// Otherwise (Local, or an UNSPEC or UNIX family) they are the zero
	// value and the receiver uses the connection's own addresses.
	Source, Destination netip.AddrPort
}

// Read reads one header from r, no byte more (what follows is the relayed
// connection's data). A short read returns io.ErrUnexpectedEOF (or io.EOF
// before the first byte), or r's error such as a deadline.
func Read(r io.Reader) (Header, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:12]); err != nil {
		return Header{}, err
	}
	if [12]byte(fixed[:12]) != Signature {
		return Header{}, ErrNoSignature
	}
	if _, err := io.ReadFull(r, fixed[12:]); err != nil {
		return Header{}, noEOF(err)
	}
	n := int(binary.BigEndian.Uint16(fixed[14:]))
	rest := make([]byte, n)
	if _, err := io.ReadFull(r, rest); err != nil {
		return Header{}, noEOF(err)
	}
	return parse(fixed[12], fixed[13], rest)
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// parse decodes the version and command byte, the family and transport
// byte and the n bytes after them (section 2.2).
func parse(verCmd, famProto byte, rest []byte) (Header, error) {
	if verCmd&0xF0 != version2 {
		return Header{}, malformed("version %d", verCmd>>4)
	}
	h := Header{Command: Command(verCmd & 0x0F)}
	if h.Command != Local && h.Command != Proxy {
		return Header{}, malformed("command %#x", verCmd&0x0F)
	}
	fam, proto := famProto>>4, famProto&0x0F
	var addrLen int
	switch fam {
	case famUnspec:
	case famInet:
		addrLen = 12
	case famInet6:
		addrLen = 36
	case famUnix:
		addrLen = 216
	default:
		return Header{}, malformed("address family %#x", fam)
	}
	if proto > protoDgram {
		return Header{}, malformed("transport %#x", proto)
	}
	if len(rest) < addrLen {
		return Header{}, malformed("length %d is short of the %d address bytes of family %#x", len(rest), addrLen, fam)
	}
	if err := checkTLVs(rest[addrLen:]); err != nil {
		return Header{}, err
	}
	// A Local command's addresses, if any, are ignored (section 2.2).
	if h.Command == Local || proto == protoUnspec {
		return h, nil
	}
	a := rest[:addrLen]
	switch fam {
	case famInet:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:]))
	case famInet6:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:]))
	}
	return h, nil
}

// checkTLVs checks that b is a sequence of whole TLVs (section 2.2.7):
// a type byte, a 16-bit length and that many bytes.
func checkTLVs(b []byte) error {
	for len(b) > 0 {
		if len(b) < 3 {
			return malformed("%d trailing bytes are not a TLV", len(b))
		}
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 3+n {
			return malformed("TLV type %#x of length %d overruns the header by %d bytes", b[0], n, 3+n-len(b))
		}
		b = b[3+n:]
	}
	return nil
}

// Append appends h as a version 2 header to b: a Proxy command over TCP
// (STREAM) from Source to Destination, IPv4 when both are IPv4 (IPv4-mapped
// included) and IPv6 otherwise; a Local command, or a Proxy command
// without valid addresses, as an UNSPEC header the receiver answers with
// the connection's own addresses.
func (h Header) Append(b []byte) []byte {
	b = append(b, Signature[:]...)
	src, dst := h.Source, h.Destination
	if h.Command != Proxy || !src.IsValid() || !dst.IsValid() {
		return append(b, version2|byte(h.Command&0x0F), famUnspec<<4|protoUnspec, 0, 0)
	}
	b = append(b, version2|byte(Proxy))
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() && d.Is4() {
		b = append(b, famInet<<4|protoStream, 0, 12)
		b = append(b, s.AsSlice()...)
		b = append(b, d.AsSlice()...)
	} else {
		b = append(b, famInet6<<4|protoStream, 0, 36)
		s16, d16 := src.Addr().As16(), dst.Addr().As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}
