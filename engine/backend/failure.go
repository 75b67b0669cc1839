package backend

import (
	"context"
	"errors"
	"net/http"
	"syscall"

	"github.com/quic-go/quic-go"

	"github.com/xdpnet/xdpnet/reuse"
)

// Failure is how the gateway answers a request it could not get served.
type Failure struct {
	Status      int
	Reason      string // short, for the body, logs and metrics
	ProxyStatus string // RFC 9209 section 2.3 error type
}

// Classify maps the last attempt's error to the answer.
func Classify(err error) Failure {
	var (
		idle *quic.IdleTimeoutError
		hs   *quic.HandshakeTimeoutError
	)
	switch {
	case errors.Is(err, ErrNoServer):
		return Failure{http.StatusServiceUnavailable, "no healthy server", "destination_unavailable"}
	case errors.Is(err, reuse.ErrQueueTimeout):
		return Failure{http.StatusServiceUnavailable, "queue timeout", "connection_limit_reached"}
	case errors.Is(err, reuse.ErrTooManyConns):
		return Failure{http.StatusServiceUnavailable, "connection limit", "connection_limit_reached"}
	case errors.Is(err, ErrBudget):
		return Failure{http.StatusServiceUnavailable, "memory budget spent", "proxy_internal_error"}
	case errors.Is(err, ErrBackoff):
		return Failure{http.StatusServiceUnavailable, "server in reconnect backoff", "destination_unavailable"}
	case errors.Is(err, ErrRequestTimeout):
		return Failure{http.StatusGatewayTimeout, "response timeout", "http_response_timeout"}
	case errors.Is(err, ErrUnreachable):
		return Failure{http.StatusBadGateway, "connection refused", "connection_refused"}
	case errors.As(err, &hs), errors.As(err, &idle), errors.Is(err, context.DeadlineExceeded):
		return Failure{http.StatusGatewayTimeout, "connect timeout", "connection_timeout"}
	// The TCP backends' socket errors (the netstack maps its own to these
	// errnos, as kernel sockets report them): RFC 9209 section 2.3.
	case errors.Is(err, syscall.ECONNREFUSED):
		return Failure{http.StatusBadGateway, "connection refused", "connection_refused"}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Failure{http.StatusBadGateway, "destination unreachable", "destination_ip_unroutable"}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Failure{http.StatusBadGateway, "connection reset", "connection_terminated"}
	}
	return Failure{http.StatusBadGateway, "backend error", "proxy_internal_error"}
}

// ErrRequestTimeout is a request that got no response headers within the
// backend's timeouts.request.
var ErrRequestTimeout = errors.New("backend request timeout")
