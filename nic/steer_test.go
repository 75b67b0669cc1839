package nic

import (
	"errors"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// redirector is a minimal steering program for tests that need every frame
// of a queue at the port (no address filtering): it redirects each frame to
// the XSKMAP entry of its RX queue and passes it to the kernel if the entry
// is empty. It is attached through a BPF link, so it goes away with the
// process that attached it.
type redirector struct {
	xsks *ebpf.Map
	prog *ebpf.Program
	lnk  link.Link
}

var _ SocketMap = (*redirector)(nil)

// newRedirector loads and attaches the program; it must run in the
// interface's network namespace.
func newRedirector(ifindex int) (_ *redirector, err error) {
	r := &redirector{}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	r.xsks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "nic_test_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 64})
	if err != nil {
		return nil, err
	}
	r.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "nic_test_redir", Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 16, asm.Word), // ctx->rx_queue_index
		asm.LoadMapPtr(asm.R1, r.xsks.FD()),
		asm.Mov.Imm(asm.R3, 2), // XDP_PASS when the queue has no socket
		asm.FnRedirectMap.Call(),
		asm.Return(),
	}})
	if err != nil {
		return nil, err
	}
	r.lnk, err = link.AttachXDP(link.XDPOptions{Program: r.prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (r *redirector) SetSocket(queue, fd int) error { return r.xsks.Put(uint32(queue), uint32(fd)) }
func (r *redirector) DeleteSocket(queue int) error  { return r.xsks.Delete(uint32(queue)) }

// IDs returns the kernel IDs of the program and the map.
func (r *redirector) IDs() (ebpf.ProgramID, ebpf.MapID, error) {
	pi, err := r.prog.Info()
	if err != nil {
		return 0, 0, err
	}
	mi, err := r.xsks.Info()
	if err != nil {
		return 0, 0, err
	}
	pid, _ := pi.ID()
	mid, _ := mi.ID()
	return pid, mid, nil
}

func (r *redirector) Close() error {
	var errs []error
	if r.lnk != nil {
		errs = append(errs, r.lnk.Close())
	}
	if r.prog != nil {
		errs = append(errs, r.prog.Close())
	}
	if r.xsks != nil {
		errs = append(errs, r.xsks.Close())
	}
	return errors.Join(errs...)
}
