package nic

import (
	"strings"
	"testing"
)

// lent returns how many frames the simulated kernel holds for reception:
// posted on the fill ring, or on the RX ring and not yet received.
func (k *fakeKernel) lent() uint32 {
	return k.words[0] - k.fillCons + k.rxProd - k.words[4]
}

// TestSmallUMEMLeavesFramesToTransmit reproduces the engine's report: with
// 4096 frames per port and the default rings (fill 4096), every frame went
// to the fill ring at Open, frames released after Receive went straight back
// there, and Alloc never found a frame again. Against the simulated kernel,
// Alloc must find frames at once and in every round of receive traffic
// (bursts that fill the RX ring included), what it sends must complete, and
// the kernel must never hold more than FillFrames for reception.
func TestSmallUMEMLeavesFramesToTransmit(t *testing.T) {
	p, k := newFakePortConfig(t, Config{Frames: 4096}, 0)
	if p.cfg.FillFrames != 2048 || p.cfg.RXReserve != 1024 {
		t.Fatalf("defaults for 4096 frames: FillFrames %d RXReserve %d, want 2048 and 1024", p.cfg.FillFrames, p.cfg.RXReserve)
	}
	if got := k.lent(); got != 2048 {
		t.Fatalf("Open lent the kernel %d frames, want FillFrames (2048)", got)
	}
	descs := make([]Desc, 64)
	var sent uint64
	for round := range 300 {
		burst := 64
		if round%50 == 0 {
			burst = 4096 // as much as the kernel can take: RX ring backlog
		}
		k.receive(p.umem, burst, 60)
		n, err := p.Receive(descs)
		if err != nil {
			t.Fatal(err)
		}
		p.Release(descs[:n])
		if got := k.lent(); got > uint32(p.cfg.FillFrames) {
			t.Fatalf("round %d: kernel holds %d frames for reception, budget %d", round, got, p.cfg.FillFrames)
		}

		m := p.Alloc(descs[:32])
		if m == 0 {
			t.Fatalf("round %d: Alloc found no frame (%d of %d frames free in the pool, %d lent to the kernel for reception)",
				round, p.pool.Stats().Free, p.cfg.Frames, k.lent())
		}
		for i := range descs[:m] {
			f := p.Frame(descs[i])[:64]
			f[0], f[63] = 0xee, 0xee
			descs[i].Len = 64
		}
		k2, _ := p.Transmit(descs[:m])
		p.Release(descs[k2:m])
		sent += uint64(k2)
		k.transmit(t, p.umem)
	}
	p.Complete()
	if st := p.ownStats(); st.TxCompleted != sent || sent < 300*16 {
		t.Fatalf("sent %d, completed %d: want every Alloc'ed frame sent and completed", sent, st.TxCompleted)
	}
	// Drain the backlog: the fill path tops up to the budget again.
	for {
		n, _ := p.Receive(descs)
		if n == 0 {
			break
		}
		p.Release(descs[:n])
	}
	p.rxMu.Lock()
	err := p.refillLocked(true)
	p.rxMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if got := k.lent(); got != uint32(p.cfg.FillFrames) {
		t.Fatalf("after the backlog drained the kernel holds %d frames for reception, want FillFrames %d", got, p.cfg.FillFrames)
	}
}

// TestTXStarvationIsCountedAndRecovers: when callers hold every frame
// reception does not, and then while those frames are in flight, Alloc
// comes up short and counts it; frames come back with Release and with
// completions, and reception keeps its frames throughout.
func TestTXStarvationIsCountedAndRecovers(t *testing.T) {
	p, k := newFakePortConfig(t, Config{Frames: 4096}, 0)
	var held []Desc
	d := make([]Desc, 256)
	for {
		m := p.Alloc(d)
		held = append(held, d[:m]...)
		if m < len(d) {
			break
		}
	}
	if p.Alloc(d[:1]) != 0 {
		t.Fatal("Alloc found a frame after it came up short with nothing released")
	}
	if got := p.ownStats().TxAllocShort; got != 2 {
		t.Fatalf("TxAllocShort %d, want 2", got)
	}
	if got := k.lent(); got != uint32(p.cfg.FillFrames) {
		t.Fatalf("kernel holds %d frames for reception while TX is starved, want FillFrames %d", got, p.cfg.FillFrames)
	}
	// Reception goes on meanwhile.
	if k.receive(p.umem, 64, 60) != 64 {
		t.Fatal("the kernel found no fill entries while TX held every free frame")
	}
	n, err := p.Receive(d[:64])
	if err != nil || n != 64 {
		t.Fatalf("Receive = %d, %v; want 64", n, err)
	}
	p.Release(d[:n])

	// Release: the frames are back for Alloc.
	p.Release(held)
	held = held[:0]
	if m := p.Alloc(d[:32]); m != 32 {
		t.Fatalf("Alloc after a Release got %d frames, want 32", m)
	} else {
		p.Release(d[:m])
	}

	// Take every frame again and transmit them all: Alloc is short while
	// they are in flight and recovers once the kernel completes them.
	for {
		m := p.Alloc(d)
		held = append(held, d[:m]...)
		if m < len(d) {
			break
		}
	}
	for i := range held {
		f := p.Frame(held[i])[:64]
		f[0], f[63] = 0xee, 0xee
		held[i].Len = 64
	}
	if sent, err := p.Transmit(held); sent != len(held) || err != nil {
		t.Fatalf("Transmit placed %d of %d: %v", sent, len(held), err)
	}
	if m := p.Alloc(d[:1]); m != 0 {
		t.Fatal("Alloc found a frame with every free one in flight")
	}
	if k.transmit(t, p.umem) != len(held) {
		t.Fatal("the kernel did not complete every frame")
	}
	if m := p.Alloc(d[:32]); m != 32 {
		t.Fatalf("Alloc after completions got %d frames, want 32", m)
	}
	p.Release(d[:32])
	p.Complete()
	p.rxCache.Flush()
	p.txCache.Flush()
	if err := p.pool.CheckConservation(); err != nil {
		t.Fatal(err)
	}
}

// TestConfigFrameBudget: defaults leave frames to transmit for every UMEM
// size the engine offers, and a Config that would leave too few names the
// fields and the problem, in Open and in CheckBuffers alike.
func TestConfigFrameBudget(t *testing.T) {
	for _, tc := range []struct {
		cfg     Config
		fill    int    // FillFrames after defaults, if no error
		reserve int    // RXReserve after defaults, if no error
		err     string // substring of the error
	}{
		{cfg: Config{}, fill: 8192, reserve: 2048},
		{cfg: Config{Frames: 8192}, fill: 4096, reserve: 2048},
		{cfg: Config{Frames: 4096}, fill: 2048, reserve: 1024},
		{cfg: Config{Frames: 4096, RXReserve: 512}, fill: 2048, reserve: 512}, // the engine's Frames/8
		{cfg: Config{Frames: 2048}, fill: 1024, reserve: 512},
		{cfg: Config{Frames: 65536, RXReserve: 16384}, fill: 8192, reserve: 8192},                                           // reserve cut to FillFrames
		{cfg: Config{Frames: 16384, FillSize: 8192, RXSize: 8192, TXSize: 8192, CompSize: 8192}, fill: 8192, reserve: 4096}, // the benchmarks
		{cfg: Config{Frames: 1024}, err: "Frames 1024 too few: reception may hold FillFrames 512 + RXReserve 256 + CacheSize 256, leaving 0 to transmit, want at least 256"},
		{cfg: Config{Frames: 4096, FillFrames: 4096}, err: "Frames 4096 too few"},
		{cfg: Config{Frames: 16, FillSize: 64}, err: "Frames 16 too few"},
		{cfg: Config{FillFrames: 8193}, err: "FillFrames 8193: want 1 to FillSize+RXSize (8192)"},
		{cfg: Config{FillFrames: -1}, err: "FillFrames -1"},
		{cfg: Config{Frames: -4}, err: "Frames -4"},
		{cfg: Config{RXReserve: -1}, err: "RXReserve -1"},
	} {
		if err := tc.cfg.CheckBuffers(); (err == nil) != (tc.err == "") {
			t.Errorf("%+v: CheckBuffers: %v, want an error: %v", tc.cfg, err, tc.err != "")
		}
		cfg := tc.cfg
		cfg.Ifindex = 1
		err := cfg.normalize(4096)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case tc.err == "" && (cfg.FillFrames != tc.fill || cfg.RXReserve != tc.reserve):
			t.Errorf("%+v: FillFrames %d RXReserve %d, want %d and %d", tc.cfg, cfg.FillFrames, cfg.RXReserve, tc.fill, tc.reserve)
		}
	}
}
