package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/internal/lab/labtest"
	"github.com/xdpnet/xdpnet/internal/privtest"
)

func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-lab"}, "unbounded"},
		{[]string{"-lab", "-count", "1", "-dst", "10.0.0.1"}, "outside"},
		{[]string{"-lab", "-count", "1", "-dst", "[2001:db8::1]:53"}, "outside"},
		{[]string{"-lab", "-count", "1", "-src", "192.0.2.1"}, "outside"},
		{[]string{"-lab", "-count", "1", "-dst", "2001:2:0:1::1", "-size", "64"}, "IPv6"},
		{[]string{"-lab", "-count", "1", "-size", "1519"}, "-size"},
		{[]string{"-lab", "-count", "1", "-size", "60"}, "-size"},
		{[]string{"-lab", "-count", "1", "-flows", "0"}, "-flows"},
		{[]string{"-lab", "-count", "1", "-mode", "pcap"}, "-mode"},
		{[]string{"-lab", "-duration", "2h"}, "-duration"},
		{[]string{"-count", "1", "-dev", "eth0"}, "-dst"},
		{[]string{"-lab", "-netns", "x", "-count", "1"}, "exclude"},
	} {
		var out, errOut bytes.Buffer
		if rc := run(c.args, &out, &errOut); rc != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%q: rc %d, stderr %q; want rc 2 and %q", c.args, rc, errOut.String(), c.want)
		}
	}
}

// TestLabRuns sends a bounded count in each mode and from an existing
// namespace, and checks the summary reports it and that the interface
// accounted for every frame (sent, or dropped at the receiver's full ring,
// which a loaded machine does).
func TestLabRuns(t *testing.T) {
	privtest.RequireRoot(t)
	l := labtest.New(t, lab.Options{EngineGRO: true})
	var forbidden []string
	defer func() {
		if len(forbidden) > 0 {
			t.Skipf("the sandbox forbids live-frames BPF_PROG_RUN to root (EPERM); not run: %q", forbidden)
		}
	}()
	for _, args := range [][]string{
		{"-lab", "-count", "5000", "-flows", "4", "-quiet"},
		{"-lab", "-sink", "gro", "-count", "5000", "-dst", "2001:2:0:1::1", "-size", "1518", "-quiet"},
		{"-lab", "-mode", "afxdp", "-count", "5000", "-flows", "3", "-quiet"},
		{"-netns", l.Client.Name, "-dev", l.ClientLink.PeerName, "-dst", "198.18.1.1:7", "-count", "5000", "-quiet"},
	} {
		var out, errOut bytes.Buffer
		if rc := run(args, &out, &errOut); rc != 0 {
			if strings.Contains(errOut.String(), "run program: operation not permitted") {
				// privtest.SkipIfForbidden's case, for one mode: the
				// others still run.
				forbidden = append(forbidden, strings.Join(args, " "))
				continue
			}
			t.Errorf("%q: rc %d, stderr %s", args, rc, errOut.String())
			continue
		}
		var txPackets, txDropped uint64
		_, after, _ := strings.Cut(out.String(), "tx_packets ")
		if _, err := fmt.Sscanf(after, "+%d, tx_dropped +%d", &txPackets, &txDropped); err != nil ||
			!strings.Contains(out.String(), "sent 5000 frames") || txPackets+txDropped < 5000 || txPackets == 0 {
			t.Errorf("%q: summary %q (%v)", args, out.String(), err)
		}
	}
}
