package bpf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// DefaultBatch is the number of frames one BPF_PROG_RUN call of the
// generator sends at most: 0.2 s at 5 Mpps between cancellation checks.
// A call with more than one frame has a fixed cost of tens of milliseconds
// on the project's 6.18 VMs (the live-frames page pool is torn down after
// an RCU grace period), so small batches waste most of the time.
const DefaultBatch = 1 << 20

// MaxFrame is the largest frame the generator sends: live frames live in
// one page with XDP headroom and the kernel's bookkeeping around them.
const MaxFrame = 3072

// GeneratorOptions configures a Generator.
type GeneratorOptions struct {
	// Flows spreads the frames over this many UDP source ports, from the
	// test frame's own source port up, round-robin. 0 or 1 sends the
	// frame unchanged. A frame that is not UDP over IPv4 or IPv6 (without
	// extension headers) cannot be spread.
	Flows int
	// Batch is the number of frames per kernel call; 0 means DefaultBatch.
	// Cancellation is checked between calls.
	Batch uint32
}

// Generator is the live-frames packet generator. One Run at a time: for
// several sending threads, use one Generator each.
type Generator struct {
	objs  genObjects
	flows uint32
	batch uint32

	mu     sync.Mutex // serialises Run and Close
	closed bool
}

// xdpMD is struct xdp_md, the context BPF_PROG_RUN gives an XDP program.
type xdpMD struct {
	Data, DataEnd, DataMeta uint32
	IngressIfindex          uint32
	RxQueueIndex            uint32
	EgressIfindex           uint32
}

// NewGenerator loads the generator program.
func NewGenerator(opts GeneratorOptions) (*Generator, error) {
	if opts.Flows < 0 || opts.Flows > 1<<16 {
		return nil, fmt.Errorf("bpf: generator flows %d out of range [0, 65536]", opts.Flows)
	}
	if opts.Batch == 0 {
		opts.Batch = DefaultBatch
	}
	g := &Generator{flows: uint32(opts.Flows), batch: opts.Batch}
	if err := loadGenObjects(&g.objs, nil); err != nil {
		return nil, fmt.Errorf("bpf: load generator: %w", err)
	}
	return g, nil
}

// udpOffset returns the offset of the UDP header in an Ethernet frame and
// the UDP source port, for frames the generator can spread over flows.
func udpOffset(frame []byte) (off int, srcPort uint16, err error) {
	if len(frame) < 14 {
		return 0, 0, errors.New("frame shorter than an Ethernet header")
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case unix.ETH_P_IP:
		if len(frame) < 34 || frame[14]>>4 != 4 || frame[23] != unix.IPPROTO_UDP {
			return 0, 0, errors.New("not UDP over IPv4")
		}
		off = 14 + int(frame[14]&0x0f)*4
	case unix.ETH_P_IPV6:
		if len(frame) < 54 || frame[20] != unix.IPPROTO_UDP {
			return 0, 0, errors.New("not UDP over IPv6 without extension headers")
		}
		off = 54
	default:
		return 0, 0, errors.New("neither IPv4 nor IPv6")
	}
	if len(frame) < off+8 {
		return 0, 0, errors.New("truncated UDP header")
	}
	return off, binary.BigEndian.Uint16(frame[off:]), nil
}

// Run transmits frame n times out of the interface ifindex with XDP_TX, and
// returns how many frames it sent: exactly n, unless ctx ends first (then
// fewer, with ctx's error). A batch the kernel re-runs after an interrupted
// call (cilium/ebpf retries on EINTR) only costs dropped runs past the
// budget. Frames the interface fails to send are not seen here: read its
// tx_dropped counter.
//
// ifindex is resolved in the calling thread's network namespace: call Run
// on a thread locked in that namespace (inside lab's NS.Do, for instance).
// The frame is copied into the kernel's pages; the caller keeps it.
func (g *Generator) Run(ctx context.Context, frame []byte, ifindex int, n uint64) (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, fmt.Errorf("bpf: generator run: %w", errClosed)
	}
	// Refuse what the kernel would answer EINVAL to, so that an EINVAL
	// below means the kernel lacks live frames.
	if len(frame) < 14 || len(frame) > MaxFrame {
		return 0, fmt.Errorf("bpf: generator frame of %d bytes: want 14..%d", len(frame), MaxFrame)
	}
	if ifindex <= 0 {
		return 0, fmt.Errorf("bpf: generator ifindex %d", ifindex)
	}
	start, err := g.runs()
	if err != nil {
		return 0, err
	}
	cfg := genGenConfig{Limit: start + n, Flows: g.flows}
	if g.flows > 1 {
		off, port, err := udpOffset(frame)
		if err != nil {
			return 0, fmt.Errorf("bpf: generator flows: %w", err)
		}
		cfg.UdpOffset, cfg.BasePort = uint32(off), port
	}
	if err := g.objs.GenCfg.Update(uint32(0), cfg, ebpf.UpdateAny); err != nil {
		return 0, fmt.Errorf("bpf: generator config: %w", err)
	}
	md := xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)}
	var sent uint64
	for sent < n {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		batch := uint32(min(n-sent, uint64(g.batch)))
		_, err := g.objs.XdpnetGen.Run(&ebpf.RunOptions{
			Data:    frame,
			Repeat:  batch,
			Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			Context: md,
		})
		runs, rerr := g.runs()
		if rerr != nil {
			return sent, rerr
		}
		sent = min(runs, cfg.Limit) - start
		if err != nil {
			if sent == 0 && errors.Is(err, unix.EINVAL) {
				// Also what a kernel without live frames (< 5.18) says.
				err = fmt.Errorf("%w (or %w)", err, ErrNotSupported)
			}
			return sent, fmt.Errorf("bpf: generator run on ifindex %d: %w", ifindex, err)
		}
	}
	return sent, nil
}

// runs reads the program's run counter.
func (g *Generator) runs() (uint64, error) {
	var v uint64
	if err := g.objs.GenRuns.Lookup(uint32(0), &v); err != nil {
		return 0, fmt.Errorf("bpf: generator run counter: %w", err)
	}
	return v, nil
}

// Close releases the program and its maps; it waits for a running Run.
func (g *Generator) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	if err := g.objs.Close(); err != nil {
		return fmt.Errorf("bpf: close generator: %w", err)
	}
	return nil
}
