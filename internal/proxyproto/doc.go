// Package proxyproto reads and writes the binary header of the PROXY
// protocol version 2 (HAProxy's proxy-protocol.txt, section 2.2), which a
// load balancer in front of a TCP server sends first on each connection to
// carry the client's original addresses.
//
// Only version 2 is read: a version 1 (text) header is not a version 2
// signature and reads as [ErrNoSignature]. TLVs (section 2.2.7) are checked
// for structure and skipped.
//
// It knows the header's bytes only; which peers may send one is the
// caller's decision.
package proxyproto
