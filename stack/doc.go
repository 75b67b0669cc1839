// Package stack runs gVisor's netstack for xdpnet: the engine speaks TCP, UDP,
// ICMP, ARP and NDP itself on the NIC queues it owns.
//
// A Stack is one netstack instance with IPv4, IPv6, TCP, UDP, ICMPv4 and
// ICMPv6. NICs are added from any gVisor link endpoint: the AF_XDP endpoint of
// this package over nic.Ports in production, gVisor's in-memory endpoints in
// unprivileged tests (see package stacktest). Addresses, routes and the
// default gateway are set per NIC; neighbours are resolved by netstack's own
// ARP (RFC 826) and NDP (RFC 4861).
//
// Sockets come out as the standard interfaces (net.Listener, net.Conn,
// net.PacketConn) through gVisor's gonet adapters, with errors mapped so that
// a locally closed socket reports net.ErrClosed, as the net package does.
package stack
