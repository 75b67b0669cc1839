// Package ntuple is ethtool n-tuple flow steering for the engine's dedicated
// queues: it installs and removes NIC receive flow classification rules
// (what `ethtool -N iface flow-type udp4 dst-ip A dst-port P action Q` does)
// through the SIOCETHTOOL ioctl, ETHTOOL_SRXCLSRLINS and ETHTOOL_SRXCLSRLDEL.
//
// The engine dedicates NIC queues to AF_XDP; RSS alone spreads its flows
// over every queue, including the kernel's, and frames for the engine that
// land on a queue without an AF_XDP socket go to the kernel instead. Rules
// that match the engine's addresses send those flows to the engine's queues.
// The engine installs them at start when an interface asks for it (engine
// config `ntuple`) and removes exactly those on Close. Whoever installs
// rules removes them (Rules.Remove): they outlive the process otherwise.
//
// Drivers without flow steering (veth, most virtual NICs) answer
// EOPNOTSUPP; those errors wrap bpf.ErrNotSupported.
package ntuple
