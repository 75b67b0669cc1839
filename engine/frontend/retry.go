package frontend

import (
	"context"
	"errors"
	"net/http"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/mux/httpmux"
)

// attemptStage says how far one attempt at a backend got before it failed.
type attemptStage uint8

const (
	// stageConnect: no connection or no stream; nothing reached the server.
	stageConnect attemptStage = iota + 1
	// stageSent: the request (or part of it) went out; no response header.
	stageSent
	// stageResponse: a response header arrived; the response is the
	// client's and is never retried.
	stageResponse
)

// idempotent reports whether a method is idempotent (RFC 9110 section
// 9.2.2): repeating it has the same intended effect, so a request that may
// have reached the server can be sent again.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// retryable decides whether a failed attempt may be tried again (on the same
// server or, with redispatch, another one). Following HAProxy's
// "retry-on conn-failure" plus idempotent replays:
//   - nothing was sent (connect failure, no stream): always;
//   - the server refused the request unprocessed (H3_REQUEST_REJECTED,
//     RFC 9114 section 4.1.1; on HTTP/2 a GOAWAY below its stream or
//     REFUSED_STREAM, RFC 9113 sections 6.8 and 8.7): always;
//   - the request was sent and no response came: only if the method is
//     idempotent and its body can be sent again (replayable);
//   - a response header came: never.
//
// The client giving up (ctx done) is never retried.
func retryable(ctx context.Context, stage attemptStage, err error, method string, replayable bool) bool {
	if ctx.Err() != nil {
		return false
	}
	switch stage {
	case stageConnect:
		return true
	case stageSent:
		if rejected(err) {
			return true
		}
		return idempotent(method) && replayable
	}
	return false
}

// rejected reports whether err is the server's HTTP/3 or HTTP/2 signal that
// it did not process the request.
func rejected(err error) bool {
	if errors.Is(err, httpmux.ErrRejected) {
		return true
	}
	var he *http3.Error
	if errors.As(err, &he) && he.Remote && he.ErrorCode == http3.ErrCodeRequestRejected {
		return true
	}
	var se *quic.StreamError
	return errors.As(err, &se) && se.Remote && se.ErrorCode == quic.StreamErrorCode(http3.ErrCodeRequestRejected)
}
