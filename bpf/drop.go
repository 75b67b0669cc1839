package bpf

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// xdpDrop is enum xdp_action's XDP_DROP.
const xdpDrop = 1

// dropSink is an attached XDP_DROP program.
type dropSink struct {
	prog *ebpf.Program
	link link.Link
}

// AttachDrop attaches a program that drops every frame to the interface
// ifindex of the calling thread's namespace: the cheapest sink for the
// generator, which also gives a veth the NAPI context it needs to accept
// XDP_TX'd frames. Close detaches it.
func AttachDrop(ifindex int, mode Mode) (io.Closer, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "xdpnet_drop",
		Type:         ebpf.XDP,
		License:      "Dual BSD/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpDrop), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("bpf: load drop program: %w", err)
	}
	if mode == ModeAuto {
		mode = ModeNative
	}
	l, err := attachXDP(prog, ifindex, mode)
	if err != nil {
		return nil, errors.Join(err, prog.Close())
	}
	return &dropSink{prog: prog, link: l}, nil
}

func (d *dropSink) Close() error {
	return errors.Join(d.link.Close(), d.prog.Close())
}
