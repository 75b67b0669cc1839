package nic

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/xdpnet/xdpnet/bufring"
)

func TestRingArithmeticAcrossWrap(t *testing.T) {
	for _, tc := range []struct {
		prod, cons, size, free, avail uint32
	}{
		{0, 0, 8, 8, 0},
		{5, 0, 8, 3, 5},
		{8, 0, 8, 0, 8},
		{2, 0xfffffffe, 8, 4, 4},          // producer wrapped, consumer not yet
		{0xffffffff, 0xfffffff9, 8, 2, 6}, // both about to wrap
		{3, 3, 2048, 2048, 0},
	} {
		if got := ringFree(tc.prod, tc.cons, tc.size); got != tc.free {
			t.Errorf("ringFree(%#x, %#x, %d) = %d, want %d", tc.prod, tc.cons, tc.size, got, tc.free)
		}
		if got := ringAvail(tc.prod, tc.cons); got != tc.avail {
			t.Errorf("ringAvail(%#x, %#x) = %d, want %d", tc.prod, tc.cons, got, tc.avail)
		}
	}
}

func TestRingCachedIndexReloadsOnlyWhenShort(t *testing.T) {
	var prod, cons, flags uint32
	r := ring{producer: &prod, consumer: &cons, flags: &flags, mask: 7, size: 8}
	// Producer side: 8 free at first; after 8 produced the cached consumer
	// says full until the consumer's word moves.
	if got := r.prodReserve(10); got != 8 {
		t.Fatalf("prodReserve(10) on an empty ring = %d, want 8", got)
	}
	r.local += 8
	r.publishProducer()
	if got := r.prodReserve(1); got != 0 {
		t.Fatalf("prodReserve on a full ring = %d, want 0", got)
	}
	cons = 3 // the kernel consumed three
	if got := r.prodReserve(5); got != 3 {
		t.Fatalf("prodReserve after 3 consumed = %d, want 3", got)
	}
	if prod != 8 {
		t.Fatalf("published producer %d, want 8", prod)
	}

	// Consumer side over the same words.
	c := ring{producer: &prod, consumer: &cons, flags: &flags, mask: 7, size: 8, local: 3, cached: 3}
	if got := c.consPeek(8); got != 5 {
		t.Fatalf("consPeek = %d, want 5", got)
	}
	flags = ringNeedWakeup
	if !c.needWakeup() {
		t.Fatal("needWakeup false with the flag set")
	}
}

// fakeKernel plays the kernel's side of a Port's four rings in Go memory.
type fakeKernel struct {
	words            [12]uint32 // producer, consumer, flags per ring
	fill, comp       []uint64
	rx, tx           []Desc
	fillCons, rxProd uint32
	txCons, compProd uint32
	noStamp          bool // receive leaves frame contents alone
}

// newFakePort builds a Port whose rings are served by a fakeKernel instead
// of a socket, with every ring counter starting at start.
func newFakePort(t *testing.T, frames, ringSize int, start uint32) (*Port, *fakeKernel) {
	t.Helper()
	return newFakePortConfig(t, Config{Frames: frames, FillSize: ringSize, CompSize: ringSize, RXSize: ringSize, TXSize: ringSize, RXReserve: ringSize / 2, CacheSize: 16}, start)
}

// newFakePortConfig is newFakePort for any Config (zero fields take the
// defaults, as in Open), filled as Open fills it.
func newFakePortConfig(t *testing.T, cfg Config, start uint32) (*Port, *fakeKernel) {
	t.Helper()
	cfg.Ifindex = 1
	if err := cfg.normalize(4096); err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{
		fill: make([]uint64, cfg.FillSize), comp: make([]uint64, cfg.CompSize),
		rx: make([]Desc, cfg.RXSize), tx: make([]Desc, cfg.TXSize),
		fillCons: start, rxProd: start, txCons: start, compProd: start,
	}
	for i := range 8 {
		k.words[i/2*3+i%2] = start
	}
	mk := func(i, size int) ring {
		return ring{producer: &k.words[3*i], consumer: &k.words[3*i+1], flags: &k.words[3*i+2],
			mask: uint32(size - 1), size: uint32(size), local: start, cached: start}
	}
	umem := make([]byte, cfg.Frames*cfg.FrameSize)
	pool, err := bufring.NewFramePool(bufring.FrameConfig{Frames: cfg.Frames, FrameSize: cfg.FrameSize, Reserve: cfg.RXReserve, CacheSize: cfg.CacheSize, Region: umem})
	if err != nil {
		t.Fatal(err)
	}
	p := &Port{cfg: cfg, umem: umem, pool: pool, frameMask: uint64(cfg.FrameSize - 1), fd: -1,
		fill: &addrRing{mk(0, cfg.FillSize), k.fill}, rx: &descRing{mk(1, cfg.RXSize), k.rx},
		tx: &descRing{mk(2, cfg.TXSize), k.tx}, comp: &addrRing{mk(3, cfg.CompSize), k.comp}}
	p.rxCache = pool.NewCache("rx")
	p.txCache = pool.NewCache("tx")
	p.rxMu.Lock()
	if err := p.refillLocked(true); err != nil {
		t.Fatal(err)
	}
	p.rxMu.Unlock()
	return p, k
}

// receive takes up to n fill entries and delivers frames of length ln into
// them the way copy mode does (data at XDP_PACKET_HEADROOM), stamping each
// with its frame number.
func (k *fakeKernel) receive(umem []byte, n int, ln uint32) int {
	fillProd, rxCons := k.words[0], k.words[4]
	got := 0
	for ; got < n && k.fillCons != fillProd && k.rxProd-rxCons < uint32(len(k.rx)); got++ {
		a := k.fill[k.fillCons&uint32(len(k.fill)-1)]
		k.fillCons++
		d := Desc{Addr: a + 256, Len: ln}
		if !k.noStamp {
			frame := umem[d.Addr : d.Addr+uint64(ln)]
			for i := range frame {
				frame[i] = byte(a>>11) + byte(i)
			}
		}
		k.rx[k.rxProd&uint32(len(k.rx)-1)] = d
		k.rxProd++
	}
	k.words[1], k.words[3] = k.fillCons, k.rxProd
	return got
}

// transmit consumes the TX ring, checks each frame and completes it.
func (k *fakeKernel) transmit(t *testing.T, umem []byte) int {
	txProd, compCons := k.words[6], k.words[10]
	n := 0
	for ; k.txCons != txProd && k.compProd-compCons < uint32(len(k.comp)); n++ {
		d := k.tx[k.txCons&uint32(len(k.tx)-1)]
		k.txCons++
		f := umem[d.Addr : d.Addr+uint64(d.Len)]
		if len(f) < 2 || f[0] != 0xee || f[len(f)-1] != 0xee {
			t.Fatalf("transmitted frame %#x len %d not as written", d.Addr, d.Len)
		}
		k.comp[k.compProd&uint32(len(k.comp)-1)] = d.Addr
		k.compProd++
	}
	k.words[7], k.words[9] = k.txCons, k.compProd
	return n
}

// TestPortRingsAgainstFakeKernel drives Receive, Release, Alloc, Transmit
// and completion reaping against a simulated kernel for many random rounds,
// starting every ring counter just below the 2^32 wrap, and checks that
// frames arrive intact and that no frame is lost or duplicated.
func TestPortRingsAgainstFakeKernel(t *testing.T) {
	const frames, ringSize = 128, 32
	p, k := newFakePort(t, frames, ringSize, 0xffffff00)
	rng := rand.New(rand.NewPCG(1, 2))
	descs := make([]Desc, ringSize)
	var held []Desc // frames the "application" owns
	var rx, tx int
	for round := range 3000 {
		ln := uint32(60 + rng.IntN(1455))
		k.receive(p.umem, rng.IntN(ringSize), ln)
		n, err := p.Receive(descs[:rng.IntN(ringSize)+1])
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range descs[:n] {
			f := p.Frame(d)
			if d.Len < 60 || d.Len > 1514 || d.Addr&2047 != 256 {
				t.Fatalf("round %d: desc %+v, want 60 to 1514 bytes at offset 256", round, d)
			}
			for i, b := range f {
				if b != byte(d.Addr>>11)+byte(i) {
					t.Fatalf("round %d: frame %#x byte %d corrupted", round, d.Addr, i)
				}
			}
		}
		rx += n
		held = append(held, descs[:n]...)

		// Echo some received frames, release others, transmit new ones.
		switch rng.IntN(3) {
		case 0:
			p.Release(held)
			held = held[:0]
		case 1:
			for i := range held {
				f := p.Frame(held[i])
				f[0], f[len(f)-1] = 0xee, 0xee
			}
			m, err := p.Transmit(held)
			if err != nil && !errors.Is(err, ErrRingFull) {
				t.Fatal(err)
			}
			tx += m
			held = append(held[:0], held[m:]...)
		case 2:
			m := p.Alloc(descs[:rng.IntN(8)])
			for i := range descs[:m] {
				if descs[i].Len != 2048 || descs[i].Addr%2048 != 0 {
					t.Fatalf("Alloc gave %+v", descs[i])
				}
				f := p.Frame(descs[i])[:64]
				f[0], f[63] = 0xee, 0xee
				descs[i].Len = 64
			}
			sent, err := p.Transmit(descs[:m])
			if err != nil && !errors.Is(err, ErrRingFull) {
				t.Fatal(err)
			}
			tx += sent
			p.Release(descs[sent:m])
		}
		if rng.IntN(2) == 0 {
			k.transmit(t, p.umem)
		}
	}
	// Drain: hand everything back and let the kernel finish.
	p.Release(held)
	for {
		n, _ := p.Receive(descs)
		rx += n
		p.Release(descs[:n])
		if n == 0 && k.transmit(t, p.umem) == 0 && p.Complete() == 0 {
			break
		}
	}

	st := p.ownStats()
	if st.RxPackets != uint64(rx) || st.TxPackets != uint64(tx) || st.TxCompleted != uint64(tx) {
		t.Fatalf("counters rx %d tx %d completed %d, want rx %d tx %d completed %d",
			st.RxPackets, st.TxPackets, st.TxCompleted, rx, tx, tx)
	}
	if rx < 1000 || tx < 1000 || k.fillCons-0xffffff00 < 1000 {
		t.Fatalf("too little traffic to mean anything: rx %d tx %d", rx, tx)
	}

	// Every frame is now in the fill ring (kernel side) or free in the pool.
	seen := map[uint64]bool{}
	for c := k.fillCons; c != k.words[0]; c++ {
		a := k.fill[c&uint32(len(k.fill)-1)]
		if seen[a] {
			t.Fatalf("frame %#x twice in the fill ring", a)
		}
		seen[a] = true
	}
	p.rxCache.Flush()
	p.txCache.Flush()
	st2 := p.pool.Stats()
	free := int(st2.Free)
	if free+len(seen) != frames {
		t.Fatalf("%d frames free in the pool + %d in the fill ring != %d", free, len(seen), frames)
	}
	if err := p.pool.CheckConservation(); err != nil {
		t.Fatal(err)
	}
}

// TestSteadyStateAllocatesNothing: a receive, echo, allocate and transmit
// round against the simulated kernel allocates no memory.
func TestSteadyStateAllocatesNothing(t *testing.T) {
	p, k := newFakePort(t, 256, 64, 0)
	descs := make([]Desc, 32)
	round := func() {
		k.receive(p.umem, 32, 60)
		n, err := p.Receive(descs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range descs[:n] {
			f := p.Frame(descs[i])
			f[0], f[len(f)-1] = 0xee, 0xee
		}
		sent, _ := p.Transmit(descs[:n])
		p.Release(descs[sent:n])
		m := p.Alloc(descs[:8])
		for i := range descs[:m] {
			f := p.Frame(descs[i])[:64]
			f[0], f[63] = 0xee, 0xee
			descs[i].Len = 64
		}
		sent, _ = p.Transmit(descs[:m])
		p.Release(descs[sent:m])
		k.transmit(t, p.umem)
	}
	round() // warm the caches
	if a := testing.AllocsPerRun(200, round); a != 0 {
		t.Fatalf("%v allocations per round, want 0", a)
	}
}

// BenchmarkRingsFakeKernel measures the port's own per-frame work, without
// a kernel: a simulated kernel fills the RX ring with 64 frames, the port
// receives and releases them (recycle) or echoes them through TX, whose
// completions it reaps. One op is one frame. The simulated kernel's work is
// included but does not write the frames.
func BenchmarkRingsFakeKernel(b *testing.B) {
	for _, mode := range []string{"recycle", "echo"} {
		b.Run("mode="+mode, func(b *testing.B) {
			t := &testing.T{}
			p, k := newFakePort(t, 4096, 1024, 0)
			k.noStamp = true
			descs := make([]Desc, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				k.receive(p.umem, 64, 60)
				n, _ := p.Receive(descs)
				if mode == "recycle" {
					p.Release(descs[:n])
				} else {
					for i := range descs[:n] {
						f := p.Frame(descs[i])
						f[0], f[len(f)-1] = 0xee, 0xee
					}
					sent, _ := p.Transmit(descs[:n])
					p.Release(descs[sent:n])
					k.transmit(t, p.umem)
				}
				done += n
			}
		})
	}
}
