// Package hwtest runs the data path's privileged checks against the queues
// of a real NIC when the environment names one, and against a veth lab
// otherwise (the default, and what CI runs):
//
//	XDPNET_HW_IFACE=eth1 XDPNET_HW_QUEUES=2,3 go test ./hwtest/
//
// The checks: the steering program attaches in native (driver) mode; AF_XDP
// sockets bind to every queue, in zero-copy mode on a NIC; frames for the
// engine's address arrive on the queue they were sent to (veth) or that an
// ntuple rule steers them to (NIC, with XDPNET_HW_ADDR and an external
// sender); ntuple rules are installed and removed, directly and by the
// engine started with `ntuple: on`. See README.md for running them on a
// server.
package hwtest

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Environment variables that select a real NIC.
const (
	// EnvIface names the interface (in the test's network namespace).
	EnvIface = "XDPNET_HW_IFACE"
	// EnvQueues lists the queues the engine gets: "2,3" or "2-5".
	EnvQueues = "XDPNET_HW_QUEUES"
	// EnvAddr is the engine's address on that NIC, not configured on the
	// kernel; with it the traffic checks wait for frames from a sender
	// on the wire.
	EnvAddr = "XDPNET_HW_ADDR"
	// EnvWait bounds the traffic checks' wait (default 10s).
	EnvWait = "XDPNET_HW_WAIT"
)

// Config is the hardware the suite runs on.
type Config struct {
	Iface  string
	Queues []int
	Addr   netip.Addr    // invalid: no traffic checks on the NIC
	Wait   time.Duration // bound of the traffic checks
}

// FromEnv reads the Config; ok is false when EnvIface is unset (run on
// veth).
func FromEnv() (cfg Config, ok bool, err error) {
	cfg.Iface = os.Getenv(EnvIface)
	if cfg.Iface == "" {
		return Config{}, false, nil
	}
	qs := os.Getenv(EnvQueues)
	if qs == "" {
		return Config{}, false, fmt.Errorf("hwtest: %s is set but %s is not: name the engine's queues", EnvIface, EnvQueues)
	}
	if cfg.Queues, err = ParseQueues(qs); err != nil {
		return Config{}, false, err
	}
	if a := os.Getenv(EnvAddr); a != "" {
		if cfg.Addr, err = netip.ParseAddr(a); err != nil {
			return Config{}, false, fmt.Errorf("hwtest: %s: %w", EnvAddr, err)
		}
	}
	cfg.Wait = 10 * time.Second
	if w := os.Getenv(EnvWait); w != "" {
		if cfg.Wait, err = time.ParseDuration(w); err != nil || cfg.Wait <= 0 || cfg.Wait > 10*time.Minute {
			return Config{}, false, fmt.Errorf("hwtest: %s=%q: want a duration up to 10m", EnvWait, w)
		}
	}
	return cfg, true, nil
}

// maxQueue bounds queue indices (the steering program's XSKMAP size).
const maxQueue = 1023

// ParseQueues parses "2,3", "2-5" or a mix ("0,4-6") into sorted, distinct
// queue indices.
func ParseQueues(s string) ([]int, error) {
	var qs []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("hwtest: queues %q: %q is not a queue index", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("hwtest: queues %q: bad range %q", s, part)
			}
		}
		if a < 0 || b > maxQueue {
			return nil, fmt.Errorf("hwtest: queues %q: indices must be in [0, %d]", s, maxQueue)
		}
		for q := a; q <= b; q++ {
			qs = append(qs, q)
		}
	}
	slices.Sort(qs)
	return slices.Compact(qs), nil
}
