package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/xdpnet/xdpnet/stack"
)

// PayloadBufferSize is the size of the payload buffers that proxied response
// bodies are copied through (one per response in flight), the unit of the
// payload allowance of buffers.memory.
const PayloadBufferSize = 32 << 10

// DefaultPayloadMemory is the payload allowance when buffers.memory is 0:
// 2048 buffers, as many responses in flight at once.
const DefaultPayloadMemory = 2048 * PayloadBufferSize

// Size is a number of bytes, written in YAML as an integer or with a unit:
// "256MiB", "64KiB", "1GiB" (powers of 1024) or "500MB", "2GB" (powers of
// 1000).
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseSize parses s as a Size.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. 256MiB, 1GiB, 1048576)", s)
	}
	return Size(n * mult), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParseSize(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*z = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (z Size) MarshalYAML() (any, error) { return int64(z), nil }

// UMEMBytes is the memory of the UMEM frames of every port: one port per
// queue of each interface on the xdp data plane, none on the kernel stack.
func (c *Config) UMEMBytes() int64 {
	if c.Dataplane != "xdp" {
		return 0
	}
	ports := 0
	for _, it := range c.Interfaces {
		ports += len(it.Queues)
	}
	return int64(ports) * int64(c.Buffers.Frames) * int64(c.Buffers.FrameSize)
}

// PayloadMemory is the payload allowance of the memory budget: what
// buffers.memory leaves beyond the UMEM, or DefaultPayloadMemory when
// buffers.memory is 0.
func (c *Config) PayloadMemory() int64 {
	if c.Buffers.Memory == 0 {
		return DefaultPayloadMemory
	}
	return int64(c.Buffers.Memory) - c.UMEMBytes()
}

// TCPReservation is what a client TCP connection reserves in the memory
// budget: the ceilings of netstack's receive and send buffers for it, on
// the xdp data plane; 0 on the kernel stack, whose buffers its sysctls
// bound.
func (c *Config) TCPReservation() int64 {
	if c.Dataplane != "xdp" {
		return 0
	}
	return int64(c.Buffers.TCPReceive.Max + c.Buffers.TCPSend.Max)
}

// TCPReserveLimit is how much of the payload allowance (PayloadMemory) the
// client TCP connections' reservations may take: all but two payload
// buffers, which stay for the transfers of the connections admitted (a
// request waits for a buffer; without them it could wait on room the
// connections took for as long as they live).
func (c *Config) TCPReserveLimit() int64 {
	return c.PayloadMemory() - 2*PayloadBufferSize
}

// TCPParkedBuffers are the buffer sizes a parked (idle) client TCP
// connection is cut to, and reserves: netstack's 4 KiB floor, or for the
// receive buffer a few units of the window scale tcp_receive.max implies
// (RFC 7323 section 2.3) when that is larger, so that the window it
// advertises never rounds down to zero.
func (c *Config) TCPParkedBuffers() (rcv, snd int) {
	return max(tcpBufferMin, int(c.Buffers.TCPReceive.Max>>14)), tcpBufferMin
}

// TCP buffer bounds: netstack's floor (a connection's smallest buffer) and
// the defaults of buffers.tcp_receive and buffers.tcp_send.
const (
	tcpBufferMin     = 4 << 10
	tcpBufferDefault = 1 << 20
	tcpBufferMax     = 8 << 20
	tcpBufferCeiling = 1 << 30 // netstack keeps sizes in int32 windows
)

func (b *TCPBuffer) setDefaults() {
	if b.Default == 0 {
		b.Default = tcpBufferDefault
	}
	if b.Max == 0 {
		b.Max = max(tcpBufferMax, b.Default)
	}
}

func (b TCPBuffer) stackRange() stack.BufferRange {
	return stack.BufferRange{Min: tcpBufferMin, Default: int(b.Default), Max: int(b.Max)}
}

func (b TCPBuffer) validate(field string, bad func(field, format string, args ...any)) {
	if b.Default < tcpBufferMin || b.Default > b.Max || b.Max > tcpBufferCeiling {
		bad(field, "default %d, max %d: want %d <= default <= max <= %d", b.Default, b.Max, tcpBufferMin, tcpBufferCeiling)
	}
}

// validateBudget checks that buffers.memory leaves room for at least two
// payload buffers (one response in flight and one waiting) and one client
// TCP connection's reservation beyond the UMEM, and the TCP buffer bounds.
func (c *Config) validateBudget(bad func(field, format string, args ...any)) {
	c.Buffers.TCPReceive.validate("buffers.tcp_receive", bad)
	c.Buffers.TCPSend.validate("buffers.tcp_send", bad)
	c.validateQUICBudget(bad)
	if c.Buffers.Wait < 0 {
		bad("buffers.wait", "%v must not be negative", c.Buffers.Wait.D())
	}
	if c.Buffers.TXWait < 0 || c.Buffers.TXWait.D() > time.Second {
		bad("buffers.tx_wait", "%v is outside 0..1s", c.Buffers.TXWait.D())
	}
	if c.Buffers.AcceptWait < 0 {
		bad("buffers.accept_wait", "%v must not be negative", c.Buffers.AcceptWait.D())
	}
	if c.Buffers.Memory == 0 {
		return
	}
	if umem, more := c.UMEMBytes(), 2*PayloadBufferSize+c.TCPReservation(); int64(c.Buffers.Memory) < umem+more {
		bad("buffers.memory", "%d bytes: the UMEM alone takes %d (ports × frames × frame_size); at least %d more are needed for two payload buffers and one TCP connection (tcp_receive.max + tcp_send.max)",
			c.Buffers.Memory, umem, more)
	}
}
