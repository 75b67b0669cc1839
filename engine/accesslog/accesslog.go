package accesslog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// Stdout is the path that sends the log to the process's standard output.
const Stdout = "stdout"

// ErrClosed is returned by Reopen on a closed Logger.
var ErrClosed = errors.New("accesslog: closed")

// Entry is one request's line. Durations are written in seconds.
type Entry struct {
	Time      time.Time // when the request arrived
	Client    string    // the client's address (ip:port), the PROXY protocol's when trusted
	Frontend  string
	Route     string // "" when no route matched
	Backend   string // "" when no route matched
	Server    string // the server of the last attempt; "" when none was tried
	Method    string
	Authority string
	Path      string
	Status    int
	BytesIn   int64 // request body bytes read from the client
	BytesOut  int64 // response body bytes written to the client
	Duration  time.Duration
	// Upstream is the wait of the last attempt for its response headers,
	// from the moment it had a backend stream; 0 when none came.
	Upstream time.Duration
	Retries  int  // attempts after the first
	Reused   bool // the last attempt ran on a connection that had served before
}

// Options shape a Logger.
type Options struct {
	// Path is Stdout or a file, opened for appending (created 0640).
	Path string
	// Sample is the share of requests logged, 0 < Sample <= 1.
	Sample float64
	// Queue is how many entries may wait for the writer.
	Queue int
	// Stdout replaces os.Stdout (tests).
	Stdout io.Writer
	// Dropped counts the entries dropped (required).
	Dropped Counter
}

// Counter counts (stats.Counter is one).
type Counter interface{ Inc() }

// Logger is an access log. Its methods are safe for concurrent use.
type Logger struct {
	opts   Options
	q      chan Entry
	reopen chan chan error

	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// New opens the log's destination and starts its writer.
func New(o Options) (*Logger, error) {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	w, f, err := open(o)
	if err != nil {
		return nil, err
	}
	l := &Logger{opts: o, q: make(chan Entry, o.Queue), reopen: make(chan chan error),
		stop: make(chan struct{}), done: make(chan struct{})}
	go l.run(w, f)
	return l, nil
}

func open(o Options) (io.Writer, *os.File, error) {
	if o.Path == Stdout {
		return o.Stdout, nil, nil
	}
	f, err := os.OpenFile(o.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("accesslog: %w", err)
	}
	return f, f, nil
}

// Sampled reports whether a request should be logged (Options.Sample);
// callers ask before building an Entry.
func (l *Logger) Sampled() bool {
	return l.opts.Sample >= 1 || rand.Float64() < l.opts.Sample
}

// Log queues e for the writer, or drops it and counts the drop when the
// queue is full or the logger closed. It never blocks.
func (l *Logger) Log(e Entry) {
	select {
	case <-l.stop:
		l.opts.Dropped.Inc()
		return
	default:
	}
	select {
	case l.q <- e:
	default:
		l.opts.Dropped.Inc()
	}
}

// Reopen makes the writer close and reopen the file (log rotation: after a
// rename, lines go to a new file at the configured path). Lines queued
// before are written to the old file. On stdout it does nothing.
func (l *Logger) Reopen() error {
	res := make(chan error, 1)
	select {
	case l.reopen <- res:
		return <-res
	case <-l.done:
		return ErrClosed
	}
}

// Close writes what is queued, closes the file and ends the writer. Entries
// logged after Close are dropped (and counted); one racing with it may be
// lost uncounted, so callers close once their requests are done.
func (l *Logger) Close() {
	l.closeOnce.Do(func() { close(l.stop) })
	<-l.done
}

// run is the writer: it formats each entry as a slog JSON record into a
// buffer, flushed whenever the queue is empty, so that a burst costs few
// writes and a quiet log is never behind.
func (l *Logger) run(w io.Writer, f *os.File) {
	defer close(l.done)
	bw := bufio.NewWriterSize(w, 64<<10)
	h := slog.NewJSONHandler(bw, &slog.HandlerOptions{
		// The record's time is the request's, under the usual key; the
		// level and the message say nothing in an access log.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
				return slog.Attr{}
			}
			return a
		},
	})
	closeFile := func() {
		bw.Flush()
		if f != nil {
			f.Close()
		}
	}
	defer func() { closeFile() }()
	write := func(e Entry) {
		r := slog.NewRecord(e.Time, slog.LevelInfo, "", 0)
		r.AddAttrs(
			slog.String("client", e.Client),
			slog.String("frontend", e.Frontend),
			slog.String("route", e.Route),
			slog.String("backend", e.Backend),
			slog.String("server", e.Server),
			slog.String("method", e.Method),
			slog.String("authority", e.Authority),
			slog.String("path", e.Path),
			slog.Int("status", e.Status),
			slog.Int64("bytes_in", e.BytesIn),
			slog.Int64("bytes_out", e.BytesOut),
			slog.Float64("duration", e.Duration.Seconds()),
			slog.Float64("upstream_duration", e.Upstream.Seconds()),
			slog.Int("retries", e.Retries),
			slog.Bool("reused", e.Reused),
		)
		h.Handle(context.Background(), r) // errors: a full disk drops lines; nothing to tell the client
	}
	for {
		select {
		case e := <-l.q:
			write(e)
			if len(l.q) == 0 {
				bw.Flush()
			}
		case res := <-l.reopen:
			if l.opts.Path == Stdout {
				res <- nil
				continue
			}
			for len(l.q) > 0 { // what was logged before goes to the old file
				write(<-l.q)
			}
			closeFile()
			nw, nf, err := open(l.opts)
			if err != nil {
				// Keep logging nowhere rather than to a closed file;
				// the next Reopen may succeed.
				nw, nf = io.Discard, nil
			}
			w, f = nw, nf
			bw.Reset(w)
			res <- err
		case <-l.stop:
			for {
				select {
				case e := <-l.q:
					write(e)
				default:
					return
				}
			}
		}
	}
}
