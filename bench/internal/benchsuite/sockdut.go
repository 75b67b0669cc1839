package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"net"

	"golang.org/x/net/ipv4"
)

// socketDUT counts the datagrams a UDP socket in the engine namespace
// reads: the kernel socket baseline (recvmmsg) and the engine's UDP path
// (ReadFrom).
type socketDUT struct {
	src     *labSource
	pc      net.PacketConn // set by the opener; closing it ends the reader
	closers []func() error // what the opener built besides, closed after pc
	rx      rxCounter
	done    chan error
	cond    map[string]string
}

var _ Offerer = (*socketDUT)(nil)

func newSocketDUT(src *labSource) *socketDUT {
	d := &socketDUT{src: src, done: make(chan error, 1), cond: map[string]string{"source": src.source}}
	d.rx.epoch = src.epoch
	return d
}

// start runs the reader; it ends when pc is closed.
func (d *socketDUT) start(read func() error) {
	go func() {
		err := read()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		d.done <- err
	}()
}

// readEach reads one datagram per call, as quic-go does.
func (d *socketDUT) readEach() error {
	buf := make([]byte, 2048)
	for {
		n, _, err := d.pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		if d.rx.probes.Load() {
			if stamp, ok := probePayload(buf[:n]); ok {
				d.rx.probe(stamp)
			}
		}
		d.rx.n.Add(1)
	}
}

// readBatch reads up to 64 datagrams per recvmmsg.
func (d *socketDUT) readBatch(conn *net.UDPConn) error {
	pc := ipv4.NewPacketConn(conn)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			return err
		}
		if d.rx.probes.Load() {
			for _, m := range msgs[:n] {
				if stamp, ok := probePayload(m.Buffers[0][:m.N]); ok {
					d.rx.probe(stamp)
				}
			}
		}
		d.rx.n.Add(uint64(n))
	}
}

// Conditions reports the packet source and what the opener noted.
func (d *socketDUT) Conditions() map[string]string { return d.cond }

func (d *socketDUT) Offer(ctx context.Context, t Trial) (TrialResult, error) {
	return d.rx.trial(ctx, t, d.src)
}

// fail tears down a half-opened DUT and returns err.
func (d *socketDUT) fail(err error) (Offerer, func() error, error) {
	var errs []error
	if d.pc != nil {
		errs = append(errs, d.pc.Close())
	}
	return nil, nil, errors.Join(err, errors.Join(errs...), d.closeRest())
}

func (d *socketDUT) close() error {
	err := d.pc.Close()
	if rerr := <-d.done; rerr != nil {
		err = errors.Join(err, fmt.Errorf("receiver: %w", rerr))
	}
	return errors.Join(err, d.closeRest())
}

func (d *socketDUT) closeRest() error {
	var errs []error
	for _, c := range d.closers {
		errs = append(errs, c())
	}
	return errors.Join(append(errs, d.src.close())...)
}
