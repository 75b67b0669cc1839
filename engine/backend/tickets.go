package backend

import (
	"crypto/tls"
)

// ticketCache is a tls.ClientSessionCache that gives every dial its own
// copy of a cached session. quic-go writes the session state a dial
// resumes (it clears SessionState.EarlyData when the ticket's transport
// parameters do not allow 0-RTT), so two dials to one server that resume
// the same cached session at once would race on it.
type ticketCache struct {
	tls.ClientSessionCache
}

var _ tls.ClientSessionCache = ticketCache{}

func newTicketCache(capacity int) ticketCache {
	return ticketCache{tls.NewLRUClientSessionCache(capacity)}
}

// Get returns a private copy of the session cached for key.
func (c ticketCache) Get(key string) (*tls.ClientSessionState, bool) {
	cs, ok := c.ClientSessionCache.Get(key)
	if !ok || cs == nil {
		return cs, ok
	}
	ticket, state, err := cs.ResumptionState()
	if err != nil || state == nil {
		return nil, false
	}
	b, err := state.Bytes()
	if err != nil {
		return nil, false
	}
	own, err := tls.ParseSessionState(b)
	if err != nil {
		return nil, false
	}
	cs, err = tls.NewResumptionState(ticket, own)
	if err != nil {
		return nil, false
	}
	return cs, true
}
