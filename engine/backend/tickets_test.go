package backend

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// recordingCache remembers the key the client stored its session under.
type recordingCache struct {
	ticketCache
	key chan string
}

func (c recordingCache) Put(key string, cs *tls.ClientSessionState) {
	c.ticketCache.Put(key, cs)
	if cs != nil {
		c.key <- key
	}
}

// Each Get hands out its own session state: quic-go writes the one a dial
// resumes, and concurrent dials to one server must not share it.
func TestTicketCacheCopiesSessions(t *testing.T) {
	cert, roots, err := quicmux.SelfSigned([]string{"backend.lab"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cache := recordingCache{newTicketCache(1), make(chan string, 1)}
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	go func() { // ends when the pipe closes
		srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		if srv.Handshake() == nil {
			srv.Write([]byte{1}) // after the session ticket
		}
	}()
	cl := tls.Client(cc, &tls.Config{ServerName: "backend.lab", RootCAs: roots, ClientSessionCache: cache})
	if _, err := cl.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	key := <-cache.key

	a, okA := cache.Get(key)
	b, okB := cache.Get(key)
	if !okA || !okB {
		t.Fatal("cached session not found")
	}
	ticketA, stateA, errA := a.ResumptionState()
	ticketB, stateB, errB := b.ResumptionState()
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if stateA == stateB {
		t.Fatal("two Gets share one session state")
	}
	if string(ticketA) != string(ticketB) || len(ticketA) == 0 {
		t.Errorf("tickets differ or are empty: %x, %x", ticketA, ticketB)
	}
	stateA.EarlyData = !stateA.EarlyData
	if stateA.EarlyData == stateB.EarlyData {
		t.Error("a write to one copy reached the other")
	}
}
