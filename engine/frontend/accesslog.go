package frontend

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/engine/accesslog"
)

// accessRec is what the proxy learns about a request for its access log
// line beyond the request itself: the attempts' server, retries and
// connection, filled in as they run.
type accessRec struct {
	server   string
	retries  int
	reused   bool
	upstream time.Duration
}

// accessLogger returns the access log a request of fe goes to, or nil:
// none configured, the frontend opted out, or the request not sampled.
func (fe *Frontend) accessLogger() *accesslog.Logger {
	l := fe.env.AccessLog.Load()
	if l == nil || fe.cfg.AccessLog != nil && !*fe.cfg.AccessLog || !l.Sampled() {
		return nil
	}
	return l
}

// countingWriter counts the response body bytes written to the client.
// Unwrap keeps http.ResponseController (flushes, deadlines) working
// through it.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Flush lets callers that assert http.Flusher flush through the wrapper.
func (c *countingWriter) Flush() { http.NewResponseController(c.ResponseWriter).Flush() }

var _ http.Flusher = (*countingWriter)(nil)

// countingBody counts the request body bytes read from the client. The
// backend transport may still read it after the handler's attempt ended,
// hence the atomic.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// logAccess writes the access log line of a request that started at
// start; rte is nil when no route matched.
func (fe *Frontend) logAccess(l *accesslog.Logger, r *http.Request, start time.Time, rte *route, status int, in *countingBody, out *countingWriter, rec *accessRec) {
	e := accesslog.Entry{
		Time: start, Client: r.RemoteAddr, Frontend: fe.cfg.Name,
		Method: r.Method, Authority: r.Host, Path: r.URL.Path, Status: status,
		BytesOut: out.n, Duration: time.Since(start),
		Server: rec.server, Retries: rec.retries, Reused: rec.reused, Upstream: rec.upstream,
	}
	if in != nil {
		e.BytesIn = in.n.Load()
	}
	if rte != nil {
		e.Route, e.Backend = rte.name, rte.be.Config().Name
	}
	l.Log(e)
}
