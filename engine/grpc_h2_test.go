package engine_test

// Trailers and gRPC through backends over TCP with TLS (issue 21 item 4,
// issue 22 item 5): grpc-go's own HTTP/2 server with TLS behind an h2
// backend, and Go's HTTP/2 server (echoTrailers) behind an h2 and an h2c
// backend, reached from every HTTP frontend. (h2o and nginx cannot be the
// origin here: neither sends trailers of its own as an origin.)

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthgrpc "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/lab"
)

// grpcH2Config puts the http (HTTP/1.1, h2c), https (h2, HTTP/1.1) and h3
// frontends in front of grpc-go's server over TLS (backend grpc, h2), with
// the 2s timeouts of grpcLabConfig that long streams must outlive; /echo
// goes to Go's HTTP/2 server over TLS (backend plain-h2), /echo-h2c to the
// same handler over h2c (plain-h2c); /broken (http frontend) to
// brokenBody on the TLS one. Health checks are off: a gRPC server
// answers a GET with an error. The %q are the https frontend's certificate
// and key, then the origins' CA.
const grpcH2Config = `dataplane: xdp
admin: 127.0.0.1:0
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - {name: http, listen: "198.18.1.1:8080", protocol: http, backend: grpc, timeouts: {idle: 2s, body: 2s},
     routes: [{path_prefix: /echo-h2c, backend: plain-h2c}, {path_prefix: /echo, backend: plain-h2},
              {path_prefix: /broken, backend: plain-h2}]}
  - {name: https, listen: "198.18.1.1:8444", protocol: https, backend: grpc, timeouts: {idle: 2s, body: 2s},
     tls: {cert: %[1]q, key: %[2]q},
     routes: [{path_prefix: /echo-h2c, backend: plain-h2c}, {path_prefix: /echo, backend: plain-h2}]}
  - {name: h3, listen: "198.18.1.1:8443", protocol: h3, backend: grpc, timeouts: {idle: 2s, body: 2s},
     routes: [{path_prefix: /echo-h2c, backend: plain-h2c}, {path_prefix: /echo, backend: plain-h2}]}
backends:
  - name: grpc
    protocol: h2
    tls: {ca: %[3]q}
    health_check: {enabled: false}
    timeouts: {connect: 1s, idle: 2s, request: 2s}
    servers: [{name: s0, address: "198.18.2.10:50051"}]
  - name: plain-h2
    protocol: h2
    tls: {ca: %[3]q}
    health_check: {enabled: false}
    servers: [{name: s0, address: "198.18.2.11:8443"}]
  - name: plain-h2c
    protocol: h2c
    health_check: {enabled: false}
    servers: [{name: s0, address: "198.18.2.12:8080"}]
`

// TestGRPCH2Backend runs the grpc-go calls (streams past every timeout,
// cancellation by the client seen by the server, error statuses from the
// server seen by the client, trailer metadata) through the h2c and https
// frontends, and gRPC framing over HTTP/3 through the h3 frontend (unary,
// a long server stream, a cancelled one), to
// grpc-go's HTTP/2 server over TLS behind an h2 backend; and request and
// response trailers and TE: trailers from every client kind to Go's
// HTTP/2 server behind an h2 and an h2c backend; a response that server
// resets mid-body (RST_STREAM) reaches curl broken, over HTTP/1.1 and h2c.
func TestGRPCH2Backend(t *testing.T) {
	files := newOriginFiles(t, "198.18.2.10", "198.18.2.11")
	fe := writeLabCert(t, filepath.Join(t.TempDir(), "https"), "198.18.1.1")
	roots := x509.NewCertPool()
	roots.AddCert(fe.leaf)
	cert, err := tls.LoadX509KeyPair(files.cert, files.key)
	if err != nil {
		t.Fatal(err)
	}
	svc := &testService{cancelled: make(chan string, 16), release: make(chan struct{})}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	testpb.RegisterTestServiceServer(gs, svc)
	hs := healthgrpc.NewServer()
	hs.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	var h2p, h2cp http.Protocols
	h2p.SetHTTP2(true)
	h2cp.SetUnencryptedHTTP2(true)
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", echoTrailers)
	mux.HandleFunc("/broken", brokenBody(svc.release))
	plainTLS := &http.Server{Handler: mux, Protocols: &h2p,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	plain := &http.Server{Handler: http.HandlerFunc(echoTrailers), Protocols: &h2cp}
	env := startLab(t, "xdp", enginelab.Options{
		Config:    fmt.Sprintf(grpcH2Config, fe.cert, fe.key, files.cert),
		NoOrigins: true,
		BeforeEngine: func(l *lab.Lab) error {
			var lns []net.Listener
			for _, a := range []string{"198.18.2.10:50051", "198.18.2.11:8443", "198.18.2.12:8080"} {
				var ln net.Listener
				if err := l.Backend.Do(func() (err error) {
					ln, err = net.Listen("tcp", a)
					return err
				}); err != nil {
					for _, ln := range lns {
						ln.Close()
					}
					return err
				}
				lns = append(lns, ln)
			}
			var serving sync.WaitGroup
			serving.Go(func() { gs.Serve(lns[0]) })
			serving.Go(func() { plainTLS.ServeTLS(lns[1], "", "") })
			serving.Go(func() { plain.Serve(lns[2]) })
			// Registered before startLab's cleanup: runs after the
			// engine and the lab are gone.
			t.Cleanup(func() {
				gs.Stop()        // closes lns[0]
				plainTLS.Close() // closes lns[1]
				plain.Close()    // closes lns[2]
				serving.Wait()
			})
			return nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)

	grpcGoCalls(t, ctx, grpcClient(t, env, "198.18.1.1:8080", nil), svc, "h2c", true)
	grpcGoCalls(t, ctx, grpcClient(t, env, "198.18.1.1:8444", roots), svc, "h2", true)
	t.Run("h3/cancel", func(t *testing.T) {
		h3Cancel(t, ctx, env, svc)
	})
	t.Run("h3/long-server-stream", func(t *testing.T) {
		t.Parallel()
		h3LongStream(t, ctx, env)
	})
	t.Run("h3/unary", func(t *testing.T) {
		t.Parallel()
		h3NativeUnary(t, ctx, env)
		// An error status in the trailers after no message.
		c, done, err := env.HTTP3Client()
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		resp, err := h3GRPC(ctx, c, env, "/grpc.testing.TestService/UnaryCall",
			&testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Unavailable), Message: "later"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m testpb.SimpleResponse
		if err := readGRPCMessage(resp.Body, &m); !errors.Is(err, io.EOF) {
			t.Fatalf("error response: %v", err)
		}
		if st := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status"); st != "14" {
			t.Fatalf("grpc-status %q, want 14 (headers %v, trailers %v)", st, resp.Header, resp.Trailer)
		}
	})

	for _, proto := range []string{"--http1.1", "--http2-prior-knowledge"} {
		t.Run("broken"+proto, func(t *testing.T) {
			wantBroken(t, env, proto, env.FrontendURL("http")+"/broken", svc.release)
		})
	}

	h3c, done, err := env.HTTP3Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(done)
	const body = "hello, trailers over TCP"
	for _, cl := range []struct {
		name  string
		c     *http.Client
		url   string
		major int // the HTTP version the client must have spoken
	}{
		{"http1.1-chunked", env.HTTPClient(1, false), env.FrontendURL("http"), 1},
		{"h2c", env.HTTPClient(1, true), env.FrontendURL("http"), 2},
		{"https-h2", httpsClient(env, roots, true), env.FrontendURL("https"), 2},
		{"https-http1.1", httpsClient(env, roots, false), env.FrontendURL("https"), 1},
		{"h3", h3c, env.FrontendURL("h3"), 3},
	} {
		for _, path := range []string{"/echo", "/echo-h2c"} {
			backend := map[string]string{"/echo": "h2", "/echo-h2c": "h2c"}[path]
			t.Run("trailers/"+cl.name+"-to-"+backend, func(t *testing.T) {
				t.Parallel()
				// Streamed: chunked on HTTP/1.1, the only way to send trailers.
				trailerExchange(t, ctx, cl.c, cl.url+path, body, -1, cl.major)
			})
		}
	}
}
