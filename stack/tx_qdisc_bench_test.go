package stack_test

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/link/qdisc/fifo"

	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/stacktest"
)

// qdiscPairSide builds one stack of a MemWire pair with the queueing
// discipline named: "bypass" (NewBypassQdisc) or "fifo" (gVisor's).
func qdiscPairSide(b *testing.B, qdisc string, p stack.Port, mac net.HardwareAddr, a4 netip.Addr) (*stack.Stack, *stack.Endpoint) {
	s, err := stack.New(stack.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	eo := stack.EndpointOptions{MAC: mac}
	ep, err := stack.NewEndpoint([]stack.Port{p}, eo)
	if err != nil {
		b.Fatal(err)
	}
	qd := stack.NewBypassQdisc(ep)
	if qdisc == "fifo" {
		qd = fifo.New(ep, 1, 1000)
	}
	n, err := s.AddNIC(ep, stack.NICOptions{QDisc: qd})
	if err != nil {
		b.Fatal(err)
	}
	if err := n.AddAddress(netip.PrefixFrom(a4, 24)); err != nil {
		b.Fatal(err)
	}
	return s, ep
}

// BenchmarkQdiscUDPPingPong: flows parallel UDP request/response loops
// between two stacks over an in-memory AF_XDP wire (stacktest.MemWire: no
// syscalls), with the bypass qdisc and with gVisor's fifo qdisc, whose
// goroutine hop every packet pays. ns/op is one round trip (of all flows
// together), cpu-ns/op the CPU time of the process (both stacks and the
// clients) per round trip, which the load of a shared machine disturbs
// less; kicks/pkt is TX kicks per packet sent, both sides. The bypass
// sub-benchmark reports x-fifo, fifo's time per round trip (measured just
// before in the same process) over its own: above 1 is faster.
func BenchmarkQdiscUDPPingPong(b *testing.B) {
	for _, flows := range []int{1, 16} {
		var fifoNs float64 // fifo's round trip, for bypass's x-fifo

		for _, qdisc := range []string{"fifo", "bypass"} {
			b.Run(fmt.Sprintf("flows=%d/qdisc=%s", flows, qdisc), func(b *testing.B) {
				w, err := stacktest.NewMemWire(stacktest.MemConfig{})
				if err != nil {
					b.Fatal(err)
				}
				sa, epa := qdiscPairSide(b, qdisc, w.A, stacktest.MACA, stacktest.AddrA4)
				sb, epb := qdiscPairSide(b, qdisc, w.B, stacktest.MACB, stacktest.AddrB4)
				srv, err := sb.ListenUDP(netip.AddrPortFrom(stacktest.AddrB4, 7))
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				go func() {
					buf := make([]byte, 2048)
					for {
						n, addr, err := srv.ReadFrom(buf)
						if err != nil {
							return
						}
						srv.WriteTo(buf[:n], addr)
					}
				}()
				clis := make([]net.Conn, flows)
				for i := range clis {
					if clis[i], err = sa.DialUDP(netip.AddrPortFrom(stacktest.AddrA4, 0), netip.AddrPortFrom(stacktest.AddrB4, 7)); err != nil {
						b.Fatal(err)
					}
					defer clis[i].Close()
				}
				// pingPong does n round trips on c; a datagram lost (a
				// receive ring overflow) is sent again after 100 ms.
				pingPong := func(c net.Conn, n int) error {
					msg, buf := make([]byte, 64), make([]byte, 2048)
					for range n {
						for {
							if _, err := c.Write(msg); err != nil {
								return err
							}
							c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
							if _, err := c.Read(buf); err == nil {
								break
							} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
								return err
							}
						}
					}
					return nil
				}
				for _, c := range clis { // ARP and warm-up
					if err := pingPong(c, 10); err != nil {
						b.Fatal(err)
					}
				}
				before := stack.Total(append(epa.Stats(), epb.Stats()...))
				cpu0 := cpuTime()
				b.ResetTimer()
				var wg sync.WaitGroup
				for i, c := range clis {
					n := b.N / flows
					if i < b.N%flows {
						n++
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := pingPong(c, n); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				if qdisc == "fifo" {
					fifoNs = ns
				} else if fifoNs > 0 {
					b.ReportMetric(fifoNs/ns, "x-fifo")
				}
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
				after := stack.Total(append(epa.Stats(), epb.Stats()...))
				if pkts := after.TXPackets - before.TXPackets; pkts > 0 {
					b.ReportMetric(float64(after.TXKicks-before.TXKicks)/float64(pkts), "kicks/pkt")
				}
			})
		}
	}
}
