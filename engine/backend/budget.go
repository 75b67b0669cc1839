package backend

import (
	"context"
	"errors"
)

// ErrBudget is wrapped by the error of a dial that got no reservation in
// the engine's memory budget (buffers.memory) before its connect timeout:
// the engine's state, not the server's, so it neither backs the server
// off nor counts against its health, and the frontends answer the
// request 503 as they do when no payload buffer is free (result
// no_buffer).
var ErrBudget = errors.New("memory budget spent (buffers.memory)")

// QUICReserver reserves a dialled QUIC connection's buffers in the memory
// budget (the frontend's QUICBudget).
type QUICReserver interface {
	// ReserveDial reserves them, waiting until ctx ends when the budget
	// is spent (the error then wraps ErrBudget); release gives them back,
	// once, however often it is called.
	ReserveDial(ctx context.Context) (release func(), err error)
}
