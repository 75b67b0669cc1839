// Package dataplane is the AF_XDP data plane, assembled and run as one
// thing the engine starts ([New]) and stops ([Plane.Close]): per
// configured interface, the bpf steering program and its address map
// (package bpf) send the frames for the gateway's addresses on each
// dedicated queue to a nic.Port (package nic), ethtool n-tuple rules
// (package nic/ntuple) keep those flows on the dedicated queues, and one
// gVisor netstack (package stack) terminates TCP and UDP on the ports.
// Everything else on those interfaces stays with the kernel.
//
// It owns:
//   - opening and closing the ports, the steering program and the n-tuple
//     rules, in the interfaces' network namespace ([Options].Do);
//   - the netstack's addresses and default gateways;
//   - the worker layout: one worker per dedicated queue, numbered over the
//     interfaces in configuration order, and the flow → worker lookup
//     ([Plane.WorkerFor]: the worker of the queue a TCP SYN arrived on);
//   - sockets for frontends ([Plane.ListenTCP], [Plane.ListenUDP]) and
//     backends ([Plane.BackendPacketConn], and [Plane.DialBackend], connected
//     to one server), with the source address chosen by route;
//   - the QUIC packet size the link MTU allows ([Plane.QUICPacketSize]);
//   - the typed snapshot of its counters ([Plane.Stats], [Stats]): ports,
//     UMEM pools, steering verdicts, endpoint queues and netstack drops.
//
// It must not know HTTP, QUIC connections, configuration files or metrics:
// [Config] is a plain struct that the engine fills from its YAML, and the
// snapshot carries JSON keys only; the engine says which metric each field
// becomes. It imports nothing above it (engine, reuse, mux): arrows point
// down, to stack, nic, bpf and bufring.
package dataplane
