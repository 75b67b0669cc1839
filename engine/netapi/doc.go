// Package netapi is what the engine needs of a network stack: [Net] (listen
// for frontends, a UDP socket per worker for backends, the worker count)
// and the optional interfaces a stack implements when it can do better
// ([ServerConnector], [ConnWorker], [PacketSizer]). [Kernel] is Net on the
// kernel's sockets; *dataplane.Plane is Net on the AF_XDP data plane.
//
// It knows sockets and nothing of configuration, pools, HTTP or the
// engine's packages, which all sit above it.
package netapi
