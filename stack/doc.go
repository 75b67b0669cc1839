// Package stack runs gVisor's netstack for xdpnet: the engine speaks TCP, UDP,
// ICMP, ARP and NDP itself on the NIC queues it owns.
//
// # Set-up
//
// A Stack is one netstack instance with IPv4, IPv6, ARP, TCP, UDP, ICMPv4 and
// ICMPv6 (New). NICs are added from any gVisor link endpoint (AddNIC): the
// AF_XDP Endpoint of this package in production (AddXDPNIC), gVisor's
// in-memory endpoints in unprivileged tests (package stacktest). Addresses,
// routes and the default gateway are set per NIC; neighbours are resolved by
// netstack's own ARP (RFC 826) and NDP (RFC 4861); netstack answers ICMP
// echo. TCP options (SACK, congestion control, buffer ranges with receive
// auto-tuning, SYN cookies, listen backlog) are stack-wide (TCPOptions).
//
// Sockets come out as the standard interfaces (net.Listener, net.Conn,
// net.PacketConn) through gVisor's gonet adapters, with errors mapped so that
// a socket closed locally, or by Stack.Close, reports net.ErrClosed as the
// net package does. An accepted TCP connection also has NotifyReadable: a
// callback when it becomes readable, so that an idle connection can wait
// for its peer without a goroutine or a buffer (engine/frontend parks idle
// HTTP/1.1 connections on it).
//
// # The AF_XDP endpoint
//
// Endpoint puts netstack on one or more AF_XDP ports (nic.Port, one per NIC
// queue). Each queue has one receive goroutine that takes frames from the RX
// ring in batches, copies them into netstack buffers and gives the frames
// back to the port at once (so the fill ring never waits on netstack),
// verifies checksums, coalesces in-order TCP segments of a flow (GRO, gVisor's
// pkg/tcpip/stack/gro) and delivers the packets. Sends pick a queue by flow
// hash, cut TCP segments of up to 64 KiB into MSS-sized frames (software GSO:
// netstack hands down one large segment with a partial checksum, as to a NIC
// with TSO), write them into UMEM frames and put a batch on the TX ring with
// one kick. A FIFO queueing discipline in front (AddXDPNIC) gathers the
// packets of many connections into such batches. A send that finds no free
// UMEM frame or no TX ring room sleeps in the port's WaitTX, woken when
// frames come back (QueueStats.TXWaits, TXWaitRounds); when they stay short
// for EndpointOptions.TXWait, the rest of a batch is dropped, counted and
// reported as ErrNoBufferSpace: TCP retransmits, no stream data is lost. Close drains the TX rings and closes the ports, so every frame is
// back in its pool (bufring's conservation check holds).
//
// UDP sockets skip netstack where they can when their traffic crosses an
// Endpoint. A connected socket (DialUDP), or one bound to a unicast address
// (ListenUDP, then per destination), writes its datagrams straight into
// UMEM frames from a header template of the route, and a per-queue kicker
// goroutine puts what gathered on the TX ring with one kick; the frames are
// the ones netstack would build (a test compares them byte for byte). The
// receive goroutines hand a datagram for such a socket's flow straight to
// that socket's bounded queue when it is unfragmented, carries no IP options
// or IPv6 extension headers and its checksums were verified. Datagrams that
// need fragmenting, that are sent before the next hop is resolved, that
// wildcard sockets send or receive, or that arrive otherwise still go
// through netstack. It exists for quic-go, which writes and reads one
// datagram per call on any socket that is not a kernel one. udpFastPath
// and udpFastRX say what they mirror of netstack and what they do not;
// EndpointOptions.DisableUDPFastPath turns both off.
//
// The receive goroutines sleep in the port's Wait, which busy-polls the RX
// ring for nic.Config.BusyPoll before it parks in the Go runtime's poller:
// set it (tens of microseconds) on ports that carry traffic, since sleeping
// alone loses packets to wake-up delay at high rates.
//
// # Checksums
//
// Received IPv4 header, TCP, UDP and ICMP checksums are verified by the
// endpoint, before GRO (a merged segment no longer matches its checksum), so
// the endpoint claims RX checksum offload to netstack; set
// EndpointOptions.TrustRXChecksum only when the NIC verified them. Sent
// checksums are computed by netstack, except those of GSO segments and
// fast-path UDP datagrams: the endpoint writes the pseudo-header sum and
// asks the port to finish them (checksum offload, nic.Port.TxChecksum),
// or finishes them itself where the port cannot (FinishChecksum). Capture
// sees such frames before the port finishes them, as tcpdump does on Linux.
//
// Frames a Linux peer sends over veth carry unfinished TCP and UDP checksums
// (CHECKSUM_PARTIAL) while the peer's TX checksum offload is on, and AF_XDP
// does not finish them: the endpoint drops them as bad (RXDropChecksumTCP,
// RXDropChecksumUDP). The lab (internal/lab) therefore turns the peers' TX
// checksum offload off (ethtool -K <peer> tx off); do the same on any veth
// peer, or, in a lab only, set TrustRXChecksum.
//
// # Capture
//
// tcpdump on the interface does not see AF_XDP traffic reliably; Capture
// (EndpointOptions.Capture) writes every frame the endpoint receives and
// sends to a pcap stream instead.
package stack
