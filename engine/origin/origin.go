package origin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// Stats counts what a Server saw.
type Stats struct {
	Conns    int64 // QUIC connections accepted (both ALPNs)
	Requests int64 // HTTP/3 requests served
	Streams  int64 // raw streams served
}

// Server is an origin on one UDP socket.
type Server struct {
	// Name is reported in the X-Origin response header.
	Name string
	// RawTarget, when set, is a TCP address each raw stream is spliced to;
	// otherwise raw streams are echoed.
	RawTarget string
	// DialTarget dials RawTarget; nil uses net.Dialer. A lab sets it to
	// dial from inside the origin's network namespace.
	DialTarget func(ctx context.Context, network, addr string) (net.Conn, error)
	// Log receives errors; nil discards them.
	Log *slog.Logger
	// StatelessResetKey, when set, lets the origin answer packets of
	// connections it does not know with a stateless reset (RFC 9000
	// section 10.3). An origin restarted on the same address with the
	// same key tells its old peers at once that their connections are
	// gone, instead of leaving them to time out.
	StatelessResetKey *quic.StatelessResetKey

	conns, requests, streams atomic.Int64

	mu       sync.Mutex
	pc       net.PacketConn
	tr       *quic.Transport
	ln       *quic.Listener
	h3       *http3.Server
	live     map[*quic.Conn]struct{}
	shutdown bool
	wg       sync.WaitGroup
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{Conns: s.conns.Load(), Requests: s.requests.Load(), Streams: s.streams.Load()}
}

// Serve accepts connections on pc until Close or Shutdown. It takes
// ownership of pc. cert is the server's certificate.
func (s *Server) Serve(pc net.PacketConn, cert tls.Certificate) error {
	tr := &quic.Transport{Conn: pc, StatelessResetKey: s.StatelessResetKey}
	ln, err := tr.Listen(quicmux.ServerTLS(cert, quicmux.ALPNH3, quicmux.ALPNRaw), &quic.Config{
		MaxIncomingStreams: 1000,
		MaxIdleTimeout:     60 * time.Second,
		Allow0RTT:          false,
	})
	if err != nil {
		tr.Close()
		pc.Close()
		return fmt.Errorf("origin: listen: %w", err)
	}
	h3 := &http3.Server{Handler: s.handler(), IdleTimeout: 60 * time.Second}
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		ln.Close()
		tr.Close()
		pc.Close()
		return net.ErrClosed
	}
	s.pc, s.tr, s.ln, s.h3, s.live = pc, tr, ln, h3, map[*quic.Conn]struct{}{}
	s.mu.Unlock()
	defer pc.Close()
	defer tr.Close()
	for {
		c, err := ln.Accept(context.Background())
		if err != nil {
			// A graceful Shutdown lets the connections finish before the
			// deferred transport close ends them (Close and Kill end them
			// sooner).
			s.wg.Wait()
			if errors.Is(err, quic.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			return fmt.Errorf("origin: accept: %w", err)
		}
		s.conns.Add(1)
		s.mu.Lock()
		if s.shutdown {
			s.mu.Unlock()
			c.CloseWithError(0, "shutting down")
			continue
		}
		s.live[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

func (s *Server) serveConn(c *quic.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.live, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	switch c.ConnectionState().TLS.NegotiatedProtocol {
	case quicmux.ALPNH3:
		if err := s.h3.ServeQUICConn(c); err != nil {
			s.logf("h3 connection ended", "err", err)
		}
	case quicmux.ALPNRaw:
		s.serveRaw(c)
	default:
		c.CloseWithError(0x1, "unknown ALPN")
	}
}

func (s *Server) serveRaw(c *quic.Conn) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { quicmux.StopUniStreams(c) })
	for {
		str, err := c.AcceptStream(context.Background())
		if err != nil {
			return
		}
		s.streams.Add(1)
		wg.Go(func() { s.serveStream(str) })
	}
}

func (s *Server) serveStream(str *quic.Stream) {
	if s.RawTarget == "" {
		// Echo; FIN after the client's FIN.
		if _, err := io.Copy(str, str); err != nil {
			str.CancelWrite(0x1)
			str.CancelRead(0x1)
			return
		}
		str.Close()
		return
	}
	dial := s.DialTarget
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	tc, err := dial(ctx, "tcp", s.RawTarget)
	cancel()
	if err != nil {
		s.logf("raw target dial", "err", err)
		str.CancelWrite(0x2)
		str.CancelRead(0x2)
		return
	}
	defer tc.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(tc, str); err != nil {
			str.CancelRead(0x1)
		}
		if cw, ok := tc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	if _, err := io.Copy(str, tc); err != nil {
		str.CancelWrite(0x1)
	} else {
		str.Close()
	}
	<-done
}

func (s *Server) logf(msg string, args ...any) {
	if s.Log != nil {
		s.Log.Debug(msg, append(args, "origin", s.Name)...)
	}
}

// handler serves:
//
//	/healthz          200 "ok"
//	/bytes/N          N bytes of payload (N <= 64 MiB)
//	/echo             the request body
//	/sleep?d=DUR      answers after DUR (at most 30s)
//	anything else     a short text naming the origin
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 || n > 64<<20 {
			http.Error(w, "bad size", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		buf := make([]byte, min(n, 32<<10))
		for i := range buf {
			buf[i] = 'a' + byte(i%26)
		}
		for n > 0 {
			k, err := w.Write(buf[:min(n, len(buf))])
			if err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d < 0 || d > 30*time.Second {
			http.Error(w, "bad duration", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "slept %v\n", d)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", s.Name)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		w.Header().Set("X-Origin", s.Name)
		mux.ServeHTTP(w, r)
	})
}

// Close stops at once: every connection is closed.
func (s *Server) Close() error {
	s.mu.Lock()
	s.shutdown = true
	tr, ln, h3 := s.tr, s.ln, s.h3
	var conns []*quic.Conn
	for c := range s.live {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Connections first, while the socket can still carry their
	// CONNECTION_CLOSE; http3.Server.Close also waits for the connections
	// handed to ServeQUICConn, which only we can close.
	for _, c := range conns {
		c.CloseWithError(0, "origin closed")
	}
	if ln != nil {
		ln.Close()
	}
	if h3 != nil {
		h3.Close()
	}
	s.wg.Wait()
	if tr != nil {
		tr.Close()
	}
	return nil
}

// Kill stops the origin as a crash would: its socket closes first, so
// peers get no CONNECTION_CLOSE and see only silence.
func (s *Server) Kill() error {
	s.mu.Lock()
	pc := s.pc
	s.mu.Unlock()
	if pc != nil {
		pc.Close()
	}
	return s.Close()
}

// Shutdown stops accepting, lets HTTP/3 requests in flight finish (GOAWAY)
// and raw streams end, then closes; past ctx it closes hard.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	ln, h3 := s.ln, s.h3
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	var err error
	if h3 != nil {
		err = h3.Shutdown(ctx)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.Close()
		err = ctx.Err()
	}
	return err
}
