package engine

import (
	"fmt"

	"github.com/xdpnet/xdpnet/bufring"
	"github.com/xdpnet/xdpnet/engine/config"
)

// newPayloadPool makes the engine's payload buffer pool: one size class of
// config.PayloadBufferSize, bounded by the payload allowance of
// buffers.memory (what the UMEM leaves), which the client TCP
// connections' buffer reservations share (frontend.TCPBudget). Its shared ring holds every buffer
// the allowance allows (up to 64Ki), so that a load that drops leaves its
// buffers pooled for the next one rather than to the GC.
func (e *Engine) newPayloadPool(cfg *config.Config) error {
	limit, reserveLimit := cfg.PayloadMemory(), int64(0)
	if cfg.Buffers.Memory != 0 {
		reserveLimit = cfg.TCPReserveLimit()
	}
	p, err := bufring.NewBytePool(bufring.ByteConfig{
		Sizes:        []int{config.PayloadBufferSize},
		Shared:       int(min(limit/config.PayloadBufferSize, 1<<16)),
		Limit:        limit,
		ReserveLimit: reserveLimit,
	})
	if err != nil {
		return fmt.Errorf("engine: payload buffers: %w", err)
	}
	e.fenv.Payload, e.fenv.PayloadWait = p, cfg.Buffers.Wait.D()
	// The client TCP connections' reservations share the pool's limit
	// when buffers.memory bounds it, all but the two payload buffers
	// ReserveLimit keeps, so that admitted connections are served rather
	// than waiting on room the connections took; with the
	// default they are only
	// counted: a default payload allowance sized for 2048 responses would
	// admit a handful of connections at the default TCP maxima.
	t := &e.fenv.TCP
	t.Conn, t.Wait = cfg.TCPReservation(), cfg.Buffers.AcceptWait.D()
	t.Rcv, t.Snd = int(cfg.Buffers.TCPReceive.Max), int(cfg.Buffers.TCPSend.Max)
	t.DefRcv, t.DefSnd = int(cfg.Buffers.TCPReceive.Default), int(cfg.Buffers.TCPSend.Default)
	t.ParkedRcv, t.ParkedSnd = cfg.TCPParkedBuffers()
	if cfg.Buffers.Memory != 0 {
		t.Pool = p
	}
	// QUIC connections reserve in the same way on both data planes:
	// quic-go's buffers are the process's (frontend.QUICBudget).
	q := &e.fenv.QUIC
	q.Conn, q.Wait, q.Windows = cfg.QUICReservation(), cfg.Buffers.AcceptWait.D(), cfg.QUICWindows()
	if cfg.Buffers.Memory != 0 {
		q.Pool = p
	}
	return nil
}
