package config

import (
	"fmt"
	"net/netip"
	"time"
)

// ProxyProtocol makes a TCP frontend (http, https, tcp) read a PROXY
// protocol v2 header (HAProxy's proxy-protocol.txt) from the load
// balancers in Trusted, as HAProxy's "tcp-request connection expect-proxy
// layer4 if { src <trusted> }": a connection from a trusted source must
// start with a header, else it is closed and counted
// (xdpnet_proxy_protocol_total{result="missing"|"malformed"|"timeout"});
// the client address it carries is then the connection's for X-Forwarded-For,
// access logs, hash balancing by source and the header sent to backends
// (send_proxy_protocol). A connection from any other source is served as
// it is: nothing it sends is read as a header, so a client cannot claim
// another address (a header it sends is just bad request bytes).
// Version 1 (text) headers are not accepted.
type ProxyProtocol struct {
	// Trusted are the source prefixes (CIDR, e.g. 198.18.1.2/32) whose
	// connections carry a header; at least one.
	Trusted []string `yaml:"trusted"`
	// Timeout bounds the wait for the whole header after accept; default
	// 5s.
	Timeout Duration `yaml:"timeout"`

	prefixes []netip.Prefix
}

// TrustedPrefixes are the validated Trusted prefixes.
func (p *ProxyProtocol) TrustedPrefixes() []netip.Prefix { return p.prefixes }

// Trusts reports whether a connection from addr must carry a header.
func (p *ProxyProtocol) Trusts(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, pf := range p.prefixes {
		if pf.Contains(addr) {
			return true
		}
	}
	return false
}

func (p *ProxyProtocol) setDefaults() {
	if p != nil && p.Timeout == 0 {
		p.Timeout = Duration(5 * time.Second)
	}
}

// validateProxyProtocol checks frontend f's proxy_protocol (at p).
func validateProxyProtocol(f *Frontend, p string, bad func(field, format string, args ...any)) {
	pp := f.ProxyProtocol
	if pp == nil {
		return
	}
	if f.Protocol == ProtoH3 {
		bad(p+".proxy_protocol", "the PROXY protocol is for TCP frontends (http, https, tcp), not h3")
	}
	if len(pp.Trusted) == 0 {
		bad(p+".proxy_protocol.trusted", "at least one source prefix is needed (the load balancers that send the header)")
	}
	pp.prefixes = pp.prefixes[:0]
	for i, s := range pp.Trusted {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			bad(fmt.Sprintf("%s.proxy_protocol.trusted[%d]", p, i), "%q is not a prefix (e.g. 198.18.1.2/32)", s)
			continue
		}
		pp.prefixes = append(pp.prefixes, pf.Masked())
	}
	if pp.Timeout <= 0 {
		bad(p+".proxy_protocol.timeout", "must be positive")
	}
}

// validateSendProxyProtocol checks backend b's send_proxy_protocol (at p).
func validateSendProxyProtocol(b *Backend, p string, bad func(field, format string, args ...any)) {
	switch {
	case b.SendProxyProtocol == "":
	case b.SendProxyProtocol != "v2":
		bad(p+".send_proxy_protocol", "%q: only v2 is sent", b.SendProxyProtocol)
	case b.Protocol != BackendRaw:
		bad(p+".send_proxy_protocol", "only raw backends (tunnels) send a PROXY header, %q has %s", b.Name, b.Protocol)
	}
}
