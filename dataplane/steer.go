package dataplane

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/xdpnet/xdpnet/bpf"
	"github.com/xdpnet/xdpnet/nic/ntuple"
)

// ntupleRules plans the flow-steering rules of one interface: a rule per
// (address, protocol), UDP then TCP for each address in order,
// dealt round-robin over the dedicated queues. RSS alone would spread the
// data plane's flows over every queue of the NIC, including those without an
// AF_XDP socket, where the steering program can only pass them to the
// kernel; the rules keep them on the dedicated queues. A rule matches the
// destination address only, not the port: it also catches the replies to
// the engine's own connections (ephemeral ports towards backends), so the
// spread is per address and protocol, not per flow.
func ntupleRules(it *Interface) []ntuple.Rule {
	if len(it.Queues) == 0 {
		return nil
	}
	var rules []ntuple.Rule
	for _, p := range it.Addresses {
		for _, proto := range []ntuple.Proto{ntuple.UDP, ntuple.TCP} {
			rules = append(rules, ntuple.Rule{Proto: proto, Dst: p.Addr(), Queue: it.Queues[len(rules)%len(it.Queues)]})
		}
	}
	return rules
}

// flowRules are the n-tuple rules New installed on one interface,
// with the way back into the interface's network namespace to remove them.
type flowRules struct {
	rules *ntuple.Rules
	do    func(func() error) error
}

// installFlowRules installs the rules of ntupleRules(it) on it.Name
// (inside do, the interfaces' network namespace) as it.NTuple asks: "off"
// installs nothing; "auto" logs and goes on when the driver has no flow
// steering; "on" and every other failure give an error. Install removes
// the rules it inserted before a failure; the caller removes the rest with
// remove, also when a later start step fails.
func installFlowRules(it *Interface, do func(func() error) error, log *slog.Logger) (flowRules, error) {
	if it.NTuple == NTupleOff {
		return flowRules{}, nil
	}
	want := ntupleRules(it)
	var rs *ntuple.Rules
	err := do(func() (err error) {
		rs, err = ntuple.Install(it.Name, want)
		return err
	})
	switch {
	case err == nil:
		log.Info("ntuple rules installed", "interface", it.Name, "rules", want, "locations", rs.Locations())
		return flowRules{rules: rs, do: do}, nil
	case it.NTuple == NTupleAuto && errors.Is(err, bpf.ErrNotSupported):
		log.Info("ntuple flow steering unsupported; RSS spreads the engine's flows", "interface", it.Name, "err", err)
		return flowRules{}, nil
	}
	return flowRules{}, fmt.Errorf("flow steering (ntuple %s): %w", it.NTuple, err)
}

// remove deletes the installed rules, if any; it is idempotent.
func (f flowRules) remove() error {
	if f.rules == nil {
		return nil
	}
	return f.do(f.rules.Remove)
}
