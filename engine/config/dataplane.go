package config

import (
	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/nic"
)

// DataPlane is the part of a validated configuration that the xdp data
// plane runs: its interfaces and buffers, for dataplane.New.
func (c *Config) DataPlane() dataplane.Config {
	dc := dataplane.Config{Buffers: dataplane.Buffers{
		Frames: c.Buffers.Frames, FrameSize: c.Buffers.FrameSize,
		Cache: c.Buffers.Cache, Reserve: c.Buffers.Reserve,
	}, TCPSendBuffer: c.Buffers.TCPSend.stackRange(), TCPReceiveBuffer: c.Buffers.TCPReceive.stackRange(),
		TXWait: c.Buffers.TXWait.D()}
	for _, it := range c.Interfaces {
		dc.Interfaces = append(dc.Interfaces, dataplane.Interface{
			Name:      it.Name,
			Queues:    it.Queues,
			XDPMode:   xdpModes[it.XDPMode],
			ZeroCopy:  zeroCopyModes[it.ZeroCopy],
			NTuple:    ntupleModes[it.NTuple],
			Addresses: it.addrs,
			Gateway:   it.gw,
			BusyPoll:  it.BusyPoll.D(),
		})
	}
	return dc
}

// The values of the interfaces' xdp_mode, zero_copy and ntuple keys.
var (
	xdpModes      = map[string]bpf.Mode{"auto": bpf.ModeAuto, "native": bpf.ModeNative, "generic": bpf.ModeGeneric}
	zeroCopyModes = map[string]nic.ZeroCopy{"auto": nic.ZeroCopyAuto, "off": nic.ZeroCopyOff, "on": nic.ZeroCopyForce}
	ntupleModes   = map[string]dataplane.NTuple{"auto": dataplane.NTupleAuto, "off": dataplane.NTupleOff, "on": dataplane.NTupleOn}
)
