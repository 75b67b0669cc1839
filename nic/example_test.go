package nic_test

import (
	"errors"
	"log"
	"net/netip"
	"time"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/nic"
)

// A receive loop on queue 0 of an interface: the steering program sends the
// frames for the engine's address to the port, which hands them out in
// batches; each batch is given back at once, as a stack that copies frames
// out would do. Run it in the interface's network namespace, as root.
func Example() {
	const ifindex, queue = 2, 0

	steer, err := bpf.LoadSteering(bpf.SteeringOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer steer.Close()
	if err := steer.AddAddr(netip.MustParseAddr("198.18.1.1")); err != nil {
		log.Fatal(err)
	}
	if err := steer.Attach(ifindex, bpf.ModeAuto); err != nil {
		log.Fatal(err)
	}

	port, err := nic.Open(nic.Config{Ifindex: ifindex, Queue: queue, Map: steer})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()

	descs := make([]nic.Desc, 64)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		n, err := port.Receive(descs)
		if err != nil {
			log.Fatal(err)
		}
		if n == 0 {
			if _, err := port.Wait(10 * time.Millisecond); errors.Is(err, nic.ErrClosed) {
				return
			}
			continue
		}
		for _, d := range descs[:n] {
			_ = port.Frame(d) // the frame's bytes, valid until Release
		}
		port.Release(descs[:n])
	}
	st, _ := port.Stats()
	log.Printf("received %d frames, %d dropped for want of fill entries",
		st.RxPackets, st.Kernel.RxFillRingEmptyDescs)
}
