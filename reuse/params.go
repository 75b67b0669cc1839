package reuse

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"

	"github.com/xdpnet/xdpnet/mux"
)

// Params is everything that makes a backend connection unshareable: two
// requests may share a connection only if their Params are equal. Params is
// comparable with ==.
type Params struct {
	// Server identifies the server (backend/name); limits and purge are
	// per server.
	Server string
	// Kind is the mux wire protocol.
	Kind mux.Kind
	// Dst is the server's address and port.
	Dst netip.AddrPort
	// Src is the local address and port to bind (zero: any). Set it when it
	// is chosen per request (transparent proxying, source pinning).
	Src netip.AddrPort
	// SNI is the TLS server name sent (RFC 6066 section 3).
	SNI string
	// ALPN is the offered application protocol list, comma-separated in
	// preference order (RFC 7301), e.g. "h3".
	ALPN string
	// ProxyLine is the PROXY protocol header sent first on the connection,
	// which carries one client's addresses ("" for none).
	ProxyLine string
	// ClientID names the TLS client identity presented (e.g. the client
	// certificate's fingerprint; "" for none).
	ClientID string
}

var hashSeed = maphash.MakeSeed()

// Hash returns the 64-bit connection hash of p (stable within a process).
// Equal Params have equal hashes; the pool compares the full Params on a
// hit, so colliding hashes are harmless.
func (p *Params) Hash() uint64 {
	h := maphash.String(hashSeed, p.Server)
	h = mix(h, uint64(p.Kind))
	h = mixAddrPort(h, p.Dst)
	if p.Src.IsValid() {
		h = mixAddrPort(h, p.Src)
	}
	h = mix(h, maphash.String(hashSeed, p.SNI))
	h = mix(h, maphash.String(hashSeed, p.ALPN))
	if p.ProxyLine != "" {
		h = mix(h, maphash.String(hashSeed, p.ProxyLine))
	}
	if p.ClientID != "" {
		h = mix(h, maphash.String(hashSeed, p.ClientID))
	}
	return h
}

func mixAddrPort(h uint64, ap netip.AddrPort) uint64 {
	a := ap.Addr()
	b := a.As16()
	h = mix(h, binary.LittleEndian.Uint64(b[:8]))
	h = mix(h, binary.LittleEndian.Uint64(b[8:]))
	h = mix(h, uint64(ap.Port())<<16|uint64(a.BitLen()))
	if z := a.Zone(); z != "" {
		h = mix(h, maphash.String(hashSeed, z))
	}
	return h
}

// mix folds v into h (a multiply-xorshift round; the keys are hashed again
// by the Go map, so this only needs to spread bits).
func mix(h, v uint64) uint64 {
	h ^= v
	h *= 0x9e3779b97f4a7c15
	return h ^ h>>29
}

// Key is a Params with its hash computed once. Make one per distinct Params
// (per server, or per client when ProxyLine or ClientID vary) and pass it to
// Worker.AttachKey to save hashing on every request.
type Key struct {
	p Params
	h uint64
}

// NewKey returns the Key of p.
func NewKey(p Params) *Key { return &Key{p: p, h: p.Hash()} }

// Params returns the key's parameters.
func (k *Key) Params() Params { return k.p }
