package bufring_test

import (
	"context"
	"fmt"
	"time"

	"github.com/xdpnet/xdpnet/bufring"
)

// A worker owns a Cache: the RX path refills the fill ring with GetRX (which
// may dip into the reserve), the TX path takes frames with Get and waits when
// the pool is exhausted; frames come back with Put or PutBatch on any cache.
func Example() {
	pool, err := bufring.NewFramePool(bufring.FrameConfig{Frames: 64, FrameSize: 2048, Reserve: 8, CacheSize: 16})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	worker := pool.NewCache("worker0")
	defer worker.Close()

	fill := make([]uint64, 64)
	n := worker.GetRX(fill[:8]) // refill the fill ring
	m := worker.GetBatch(fill[n:])
	fmt.Println("fill ring got", n, "frames; TX took the other", m, "leaving reserve", pool.Stats().Reserve)

	// TX finds the pool empty: Get never takes the RX reserve. A frame
	// released on another worker wakes it; that worker flushes its cache
	// as it goes idle, so the frame cannot be stranded there.
	other := pool.NewCache("worker1")
	done := make(chan struct{})
	go func() { // worker1's goroutine owns other until done
		defer close(done)
		other.Put(fill[n])
		other.Flush()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr, err := worker.Wait(ctx, bufring.ClassTX)
	fmt.Println("tx frame", addr == fill[n], err)

	worker.Put(addr)
	<-done
	other.PutBatch(fill[:n])
	other.PutBatch(fill[n+1 : n+m])
	other.Close()
	s := pool.Stats()
	fmt.Println("in use", s.InUse, "reserve", s.Reserve, "of", s.ReserveTarget)
	fmt.Println(pool.CheckConservation())
	// Output:
	// fill ring got 8 frames; TX took the other 48 leaving reserve 8
	// tx frame true <nil>
	// in use 0 reserve 8 of 8
	// <nil>
}

// Byte buffers for stream data: Get(n) returns a buffer of the smallest
// class holding n; Resize changes the classes while traffic goes on.
func ExampleBytePool() {
	pool, err := bufring.NewBytePool(bufring.ByteConfig{Sizes: []int{1 << 10, 16 << 10}})
	if err != nil {
		panic(err)
	}
	c := pool.NewCache("stream")
	b := c.Get(1500)
	fmt.Println(len(b), cap(b))
	c.Put(b)

	if err := pool.Resize([]int{4 << 10, 64 << 10}); err != nil {
		panic(err)
	}
	b = c.Get(1500)
	fmt.Println(len(b), cap(b), pool.Stats().Generation)
	c.Put(b)
	// Output:
	// 1500 16384
	// 1500 4096 2
}
