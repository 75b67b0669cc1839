package frontend

import (
	"hash/maphash"
	"net"
	"net/netip"

	"github.com/xdpnet/xdpnet/engine/netapi"
)

// pickWorker chooses the worker serving a client connection: for TCP on a
// stack that can tell (netapi.ConnWorker), the worker of the RX queue the
// connection arrived on, so that its packets and its requests stay on one
// worker's queue, buffers and backend pool; otherwise (QUIC clients, the
// kernel stack, a SYN the stack forgot) one chosen by a hash of the
// client's address, so that a client's connections share a worker's pool.
func (e *Env) pickWorker(local, remote net.Addr, tcp bool) int {
	n := e.Workers
	if n == 1 {
		return 0
	}
	if cw, ok := e.Net.(netapi.ConnWorker); ok && tcp {
		la, lok := addrPort(local)
		ra, rok := addrPort(remote)
		if lok && rok {
			if w, ok := cw.WorkerFor(la, ra); ok && w >= 0 && w < n {
				e.Counters.WorkerPicks.WithLabelValues("rx_queue").Inc()
				return w
			}
		}
	}
	e.Counters.WorkerPicks.WithLabelValues("hash").Inc()
	return int(maphash.String(workerSeed, remote.String()) % uint64(n))
}

// addrPort converts a socket address to a netip.AddrPort.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort(), true
	case *net.UDPAddr:
		return a.AddrPort(), true
	case nil:
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

var workerSeed = maphash.MakeSeed()
