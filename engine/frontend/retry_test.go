package frontend

import (
	"context"
	"errors"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func TestRetryable(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	boom := errors.New("boom")
	rej := &quic.StreamError{Remote: true, ErrorCode: quic.StreamErrorCode(http3.ErrCodeRequestRejected)}
	for _, tc := range []struct {
		name       string
		ctx        context.Context
		stage      attemptStage
		err        error
		method     string
		replayable bool
		want       bool
	}{
		{"connect failure, POST", live, stageConnect, boom, "POST", false, true},
		{"sent, GET", live, stageSent, boom, "GET", true, true},
		{"sent, PUT", live, stageSent, boom, "PUT", true, true},
		{"sent, DELETE", live, stageSent, boom, "DELETE", true, true},
		{"sent, POST", live, stageSent, boom, "POST", true, false},
		{"sent, PATCH", live, stageSent, boom, "PATCH", true, false},
		{"sent, PUT with streamed body", live, stageSent, boom, "PUT", false, false},
		{"sent, POST rejected unprocessed", live, stageSent, rej, "POST", false, true},
		{"response started", live, stageResponse, boom, "GET", true, false},
		{"client gone", gone, stageConnect, boom, "GET", true, false},
	} {
		if got := retryable(tc.ctx, tc.stage, tc.err, tc.method, tc.replayable); got != tc.want {
			t.Errorf("%s: retryable = %v, want %v", tc.name, got, tc.want)
		}
	}
}
