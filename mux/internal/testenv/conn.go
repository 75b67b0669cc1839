package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/xdpnet/xdpnet/mux"
)

// Watcher is a mux.Watcher that records its calls: Credit counts
// StreamCredit calls, Dead receives ConnDead's error.
type Watcher struct {
	Credit atomic.Int32
	Dead   chan error
}

// NewWatcher returns a Watcher with room for one death.
func NewWatcher() *Watcher { return &Watcher{Dead: make(chan error, 1)} }

func (w *Watcher) StreamCredit(mux.Conn)          { w.Credit.Add(1) }
func (w *Watcher) ConnDead(_ mux.Conn, err error) { w.Dead <- err }

// Echo copies s back to itself until EOF, then closes it: the server side
// of RoundTrip.
func Echo(s mux.Stream) {
	io.Copy(s, s)
	s.Close()
}

// RoundTrip writes msg on a new stream of c, half-closes and reads the
// echo.
func RoundTrip(ctx context.Context, c mux.Conn, msg []byte) error {
	s, err := c.OpenStream(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Write(msg)
		if err == nil {
			err = s.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(s)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("stream %d: echo returned %d bytes, want %d", s.ID(), len(got), len(msg))
	}
	return nil
}
