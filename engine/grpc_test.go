package engine_test

// Trailers and gRPC through the gateway (issue 21, item 4): grpc-go clients
// through the h2c frontend and a quic-go HTTP/3 client sending gRPC's
// framing itself through the h3 frontend, to a grpc-go server (its
// http.Handler transport) served over HTTP/3 by quic-go in the lab's
// backend namespace; plain trailers with curl, nghttp and Go's clients.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthgrpc "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/lab"
)

// grpcOrigin is where the test's HTTP/3 origin listens.
var grpcOrigin = netip.MustParseAddrPort("198.18.2.10:443")

// grpcLabConfig puts an h2c (http), an https (h2 and HTTP/1.1 over TLS)
// and an h3 frontend in front of the test's origin, with client and backend timeouts far shorter than the
// long streams the tests run, so that a stream outliving them shows they
// do not cut it: the request timeout covers only the wait for response
// headers, the idle timeouts only connections with nothing in flight, and
// the body timeout each read of a request body. The %q are the https
// frontend's certificate and key, then the origin's CA.
const grpcLabConfig = `dataplane: xdp
admin: 127.0.0.1:0
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - {name: http, listen: "198.18.1.1:8080", protocol: http, backend: grpc, timeouts: {idle: 2s, body: 2s}}
  - {name: h3, listen: "198.18.1.1:8443", protocol: h3, backend: grpc, timeouts: {idle: 2s, body: 2s}}
  - {name: https, listen: "198.18.1.1:8444", protocol: https, backend: grpc, timeouts: {idle: 2s, body: 2s},
     tls: {cert: %q, key: %q}}
backends:
  - name: grpc
    protocol: h3
    tls: {ca: %q}
    health_check: {interval: 500ms, timeout: 400ms, path: /healthz, rise: 1, fall: 2}
    timeouts: {connect: 1s, idle: 2s, request: 2s}
    servers:
      - {name: s0, address: "198.18.2.10:443"}
`

// testService is the gRPC server's grpc.testing.TestService: payloads of
// the sizes asked, at the intervals asked, the status asked; it reports
// the calls whose context ended before they finished (cancelled).
type testService struct {
	testpb.UnimplementedTestServiceServer
	cancelled chan string
	// release lets /broken (brokenBody) break its response.
	release chan struct{}
}

func payload(n int32) *testpb.Payload {
	return &testpb.Payload{Body: bytes.Repeat([]byte{'p'}, int(n))}
}

func echoStatus(st *testpb.EchoStatus) error {
	if st == nil || st.Code == 0 {
		return nil
	}
	return status.Error(codes.Code(st.Code), st.Message)
}

// ended is called when a call fails on its stream: it reports the call if
// its context ends, as it does, a little after the stream error, when the
// client went away (the transport's watcher of the request's context
// cancels it), within 5s.
func (s *testService) ended(ctx context.Context, method string) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
		select {
		case s.cancelled <- method:
		default:
		}
	case <-t.C:
	}
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-echo"); len(v) > 0 {
		grpc.SetTrailer(ctx, metadata.Pairs("x-echo-trailer", v[0]))
	}
	if err := echoStatus(req.ResponseStatus); err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{Payload: payload(req.ResponseSize)}, nil
}

// send sends the responses params ask for, each after its interval.
func (s *testService) send(ctx context.Context, method string, params []*testpb.ResponseParameters, send func(*testpb.StreamingOutputCallResponse) error) error {
	for _, p := range params {
		if p.IntervalUs > 0 {
			t := time.NewTimer(time.Duration(p.IntervalUs) * time.Microsecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				s.ended(ctx, method)
				return ctx.Err()
			}
		}
		if err := send(&testpb.StreamingOutputCallResponse{Payload: payload(p.Size)}); err != nil {
			s.ended(ctx, method)
			return err
		}
	}
	return nil
}

func (s *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if md, _ := metadata.FromIncomingContext(stream.Context()); len(md.Get("x-headers-first")) > 0 {
		if err := stream.SendHeader(metadata.Pairs("x-early", "1")); err != nil {
			return err
		}
	}
	if err := s.send(stream.Context(), "StreamingOutputCall", req.ResponseParameters, stream.Send); err != nil {
		return err
	}
	return echoStatus(req.ResponseStatus)
}

func (s *testService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	var n int32
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			s.ended(stream.Context(), "StreamingInputCall")
			return err
		}
		n += int32(len(req.GetPayload().GetBody()))
	}
}

func (s *testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			s.ended(stream.Context(), "FullDuplexCall")
			return err
		}
		if err := s.send(stream.Context(), "FullDuplexCall", req.ResponseParameters, stream.Send); err != nil {
			return err
		}
		if err := echoStatus(req.ResponseStatus); err != nil {
			return err
		}
	}
}

// grpcOverH3 serves grpc-go's http.Handler transport (grpc.Server's
// ServeHTTP) on quic-go's HTTP/3 server. That transport refuses a request
// whose ProtoMajor is not 2 ("gRPC requires HTTP/2") although all it uses
// HTTP/3 gives the same way (a body streamed both ways, Flush, trailers
// set after the body), so this test-only wrapper presents the request as
// HTTP/2 on a shallow copy. It also tells the client, in a response
// header, the TE field the backend received.
func grpcOverH3(gs *grpc.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend-Te", r.Header.Get("Te"))
		r2 := r.WithContext(r.Context())
		r2.ProtoMajor, r2.ProtoMinor = 2, 0
		gs.ServeHTTP(w, r2)
	})
}

// trailersOnlyMethod answers as gRPC over HTTP/2 answers a call that fails
// before any message (grpc-go's own HTTP/2 server does it so): one
// header block carrying grpc-status and grpc-message, no body, no
// trailers ("Trailers-Only" in gRPC's PROTOCOL-HTTP2.md).
const trailersOnlyMethod = "/xdpnet.test.Gone/Call"

func trailersOnly(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Grpc-Status", "5")
	w.Header().Set("Grpc-Message", "nothing here: 100%25")
	w.WriteHeader(http.StatusOK)
}

// echoTrailers answers with the request body, its length in a declared
// trailer, each request trailer X as an undeclared trailer X-Echo-X, and
// the TE field it received in X-Backend-Te.
func echoTrailers(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Backend-Te", r.Header.Get("Te"))
	w.Header().Set("Trailer", "X-Body-Bytes")
	w.Write(body)
	w.Header().Set("X-Body-Bytes", fmt.Sprint(len(body)))
	for k, vv := range r.Trailer {
		w.Header()[http.TrailerPrefix+"X-Echo-"+k] = vv
	}
}

// brokenBody sends part of a body and then, once the test says the client
// has it (release), resets the stream, as a backend that fails
// mid-response. Without the wait the reset could overtake the response
// headers, and the gateway would answer 502 instead.
func brokenBody(release <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("b"), 1000))
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		panic(http.ErrAbortHandler)
	}
}

// startGRPCLab starts the engine on grpcLabConfig in front of an HTTP/3
// origin (quic-go) serving the gRPC server and the plain handlers above.
// roots holds the https frontend's certificate.
func startGRPCLab(t *testing.T) (env *enginelab.Env, svc *testService, roots *x509.CertPool) {
	t.Helper()
	files := newOriginFiles(t, grpcOrigin.Addr().String())
	fe := writeLabCert(t, filepath.Join(t.TempDir(), "https"), "198.18.1.1")
	roots = x509.NewCertPool()
	roots.AddCert(fe.leaf)
	cert, err := tls.LoadX509KeyPair(files.cert, files.key)
	if err != nil {
		t.Fatal(err)
	}
	svc = &testService{cancelled: make(chan string, 16), release: make(chan struct{})}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, svc)
	hs := healthgrpc.NewServer()
	hs.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/echo", echoTrailers)
	mux.HandleFunc("/broken", brokenBody(svc.release))
	mux.HandleFunc(trailersOnlyMethod, trailersOnly)
	mux.Handle("/", grpcOverH3(gs))
	origin := &http3.Server{
		Handler:   mux,
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}),
	}
	env = startLab(t, "xdp", enginelab.Options{
		Config:    fmt.Sprintf(grpcLabConfig, fe.cert, fe.key, files.cert),
		NoOrigins: true,
		BeforeEngine: func(l *lab.Lab) error {
			var pc net.PacketConn
			if err := l.Backend.Do(func() (err error) {
				pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(grpcOrigin))
				return err
			}); err != nil {
				return err
			}
			var serving sync.WaitGroup
			serving.Go(func() { origin.Serve(pc) })
			// Registered before startLab's cleanup: runs after the
			// engine and the lab are gone.
			t.Cleanup(func() {
				origin.Close()
				pc.Close()
				serving.Wait()
				gs.Stop()
			})
			return nil
		},
	})
	if err := probeGet(env.HTTPClient(1, false), env.FrontendURL("http")+"/healthz", 10*time.Second); err != nil {
		t.Fatalf("gateway to the origin: %v", err)
	}
	return env, svc, roots
}

// grpcClient is a grpc-go client connection to addr: the h2c frontend
// with roots nil (insecure credentials: gRPC over cleartext HTTP/2 with
// prior knowledge), else the https one (TLS, ALPN h2) trusting roots.
func grpcClient(t *testing.T, env *enginelab.Env, addr string, roots *x509.CertPool) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if roots != nil {
		creds = credentials.NewTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return env.Dial(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// wantStatus fails t unless err is a gRPC status with code and msg.
func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || st.Message() != msg {
		t.Fatalf("got %v, want status %v %q", err, code, msg)
	}
}

// waitCancelled waits until the server saw method's context end.
func waitCancelled(t *testing.T, svc *testService, method string) {
	t.Helper()
	select {
	case m := <-svc.cancelled:
		if m != method {
			t.Fatalf("server saw %s cancelled, want %s", m, method)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the server did not see %s cancelled within 10s", method)
	}
}

// longStream is a server stream lasting longer than every timeout of
// grpcLabConfig (2s): 40 messages 300ms apart, about 12s.
func longStream() []*testpb.ResponseParameters {
	p := make([]*testpb.ResponseParameters, 40)
	for i := range p {
		p[i] = &testpb.ResponseParameters{Size: 100, IntervalUs: 300_000}
	}
	return p
}

// TestGRPCGateway runs grpc-go calls of every kind through the h2c and
// https (h2 over TLS) frontends and gRPC's framing by hand over HTTP/3
// through the h3 frontend, to a grpc-go server behind an HTTP/3 backend.
func TestGRPCGateway(t *testing.T) {
	env, svc, roots := startGRPCLab(t)
	// The subtests run in parallel after this function returned.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)

	grpcGoCalls(t, ctx, grpcClient(t, env, "198.18.1.1:8080", nil), svc, "h2c", false)
	grpcGoCalls(t, ctx, grpcClient(t, env, "198.18.1.1:8444", roots), svc, "h2", false)
	t.Run("h3/long-server-stream", func(t *testing.T) {
		t.Parallel()
		h3LongStream(t, ctx, env)
	})

	t.Run("h3/silent-stream", func(t *testing.T) {
		// A server stream silent for 3.5s, both ways, past the h3
		// frontend's 2s idle timeout (also its QUIC idle timeout): the
		// connection has a request in flight, so it is not idle.
		t.Parallel()
		c, done, err := env.HTTP3Client()
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		c.Timeout = 0 // the context bounds the call
		resp, err := h3GRPC(ctx, c, env, "/grpc.testing.TestService/StreamingOutputCall",
			&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 2, IntervalUs: 3_500_000}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		start := time.Now()
		for i := range 2 {
			var m testpb.StreamingOutputCallResponse
			if err := readGRPCMessage(resp.Body, &m); err != nil {
				t.Fatalf("message %d after %v: %v", i, time.Since(start), err)
			}
		}
		var m testpb.StreamingOutputCallResponse
		if err := readGRPCMessage(resp.Body, &m); !errors.Is(err, io.EOF) || resp.Trailer.Get("Grpc-Status") != "0" {
			t.Fatalf("end of call: %v, trailers %v", err, resp.Trailer)
		}
	})
	t.Run("h3/idle-connection-closed", func(t *testing.T) {
		// What the PINGs keeping silent streams alive must not do: keep
		// a connection with nothing in flight past the idle timeout.
		t.Parallel()
		pc, err := env.ListenPacket()
		if err != nil {
			t.Fatal(err)
		}
		tr := &quic.Transport{Conn: pc}
		defer func() { tr.Close(); pc.Close() }()
		conn, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.1.1:8443")),
			&tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}, &quic.Config{MaxIdleTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseWithError(0, "")
		if err := getOK(ctx, (&http3.Transport{}).NewClientConn(conn), env.FrontendURL("h3")+"/healthz"); err != nil {
			t.Fatal(err)
		}
		idleSince := time.Now()
		select {
		case <-conn.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the idle connection still open after 10s (idle timeout 2s)")
		}
		var app *quic.ApplicationError
		if err := context.Cause(conn.Context()); !errors.As(err, &app) || !app.Remote || app.ErrorCode != quic.ApplicationErrorCode(http3.ErrCodeNoError) {
			t.Fatalf("closed by %v, want the server's H3_NO_ERROR", err)
		}
		t.Logf("idle connection closed after %v", time.Since(idleSince).Round(time.Millisecond))
	})
	t.Run("h3/bidi-quiet-client", func(t *testing.T) {
		t.Parallel()
		c, done, err := env.HTTP3Client()
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		c.Timeout = 0               // the context bounds the call
		params := longStream()[:12] // 3.6s, the request stream open and quiet
		b, err := proto.Marshal(&testpb.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		pr, pw := io.Pipe()
		var writing sync.WaitGroup
		defer writing.Wait()
		defer pw.Close() // first: ends a Write nobody reads
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, env.FrontendURL("h3")+"/grpc.testing.TestService/FullDuplexCall", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		writing.Go(func() { pw.Write(append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)) })
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		start := time.Now()
		for i := range params {
			var m testpb.StreamingOutputCallResponse
			if err := readGRPCMessage(resp.Body, &m); err != nil {
				t.Fatalf("message %d after %v: %v", i, time.Since(start), err)
			}
		}
		pw.Close() // the client's end of the call
		var m testpb.StreamingOutputCallResponse
		if err := readGRPCMessage(resp.Body, &m); !errors.Is(err, io.EOF) || resp.Trailer.Get("Grpc-Status") != "0" {
			t.Fatalf("end of call: %v, trailers %v", err, resp.Trailer)
		}
	})
	t.Run("h3/unary", func(t *testing.T) {
		t.Parallel()
		c, done, err := env.HTTP3Client()
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		resp, err := h3GRPC(ctx, c, env, "/grpc.testing.TestService/UnaryCall", &testpb.SimpleRequest{ResponseSize: 20000}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var m testpb.SimpleResponse
		if err := readGRPCMessage(resp.Body, &m); err != nil || len(m.GetPayload().GetBody()) != 20000 {
			t.Fatalf("response %v %v", m.GetPayload() != nil, err)
		}
		if err := readGRPCMessage(resp.Body, &m); !errors.Is(err, io.EOF) {
			t.Fatalf("after the message: %v", err)
		}
		if resp.Trailer.Get("Grpc-Status") != "0" || resp.Header.Get("X-Backend-Te") != "trailers" {
			t.Fatalf("trailers %v, headers %v", resp.Trailer, resp.Header)
		}
		// An error status in the trailers, and one in a trailers-only response.
		resp, err = h3GRPC(ctx, c, env, "/grpc.testing.TestService/UnaryCall",
			&testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Unavailable), Message: "later"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := readGRPCMessage(resp.Body, &m); !errors.Is(err, io.EOF) {
			t.Fatalf("error response: %v", err)
		}
		if resp.Trailer.Get("Grpc-Status") != "14" || resp.Trailer.Get("Grpc-Message") != "later" {
			t.Fatalf("trailers %v", resp.Trailer)
		}
		resp, err = h3GRPC(ctx, c, env, trailersOnlyMethod, &testpb.Empty{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := readGRPCMessage(resp.Body, &m); !errors.Is(err, io.EOF) {
			t.Fatalf("trailers-only response: %v", err)
		}
		if resp.Header.Get("Grpc-Status") != "5" || resp.Header.Get("Grpc-Message") != "nothing here: 100%25" {
			t.Fatalf("headers %v", resp.Header)
		}
	})
	t.Run("h3/cancel", func(t *testing.T) {
		h3Cancel(t, ctx, env, svc)
	})
}

// grpcGoCalls runs grpc-go calls of every kind on cc (through frontend fe,
// which names the subtests), the streaming ones in parallel. native is a
// backend that is grpc-go's own HTTP/2 server rather than its ServeHTTP
// transport on HTTP/3 (grpcOverH3): that server answers an unknown method
// with a trailers-only response itself and tells nothing of TE.
func grpcGoCalls(t *testing.T, ctx context.Context, cc *grpc.ClientConn, svc *testService, fe string, native bool) {
	tc := testpb.NewTestServiceClient(cc)
	t.Run(fe+"/long-server-stream", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		stream, err := tc.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: longStream()})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			_, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("after %d messages, %v: %v", n, time.Since(start), err)
			}
			n++
		}
		if n != 40 {
			t.Fatalf("%d messages, want 40", n)
		}
		t.Logf("40 messages over %v, past the 2s request, idle and body timeouts", time.Since(start).Round(time.Millisecond))
	})
	t.Run(fe+"/health", func(t *testing.T) {
		t.Parallel()
		hc := healthpb.NewHealthClient(cc)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check: %v %v", r, err)
		}
		// An error with no message before it.
		_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
		wantStatus(t, err, codes.NotFound, "unknown service")
	})
	t.Run(fe+"/unary", func(t *testing.T) {
		t.Parallel()
		var hdr, trl metadata.MD
		mctx := metadata.AppendToOutgoingContext(ctx, "x-echo", "42")
		r, err := tc.UnaryCall(mctx, &testpb.SimpleRequest{ResponseSize: 100 << 10, Payload: payload(50 << 10)},
			grpc.Header(&hdr), grpc.Trailer(&trl))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.GetPayload().GetBody()) != 100<<10 {
			t.Fatalf("payload of %d bytes", len(r.GetPayload().GetBody()))
		}
		if got := hdr.Get("x-backend-te"); !native && (len(got) != 1 || got[0] != "trailers") {
			t.Errorf("backend saw TE %q, want trailers", got)
		}
		if got := trl.Get("x-echo-trailer"); len(got) != 1 || got[0] != "42" {
			t.Errorf("trailer x-echo-trailer %q, want 42 (trailers %v)", got, trl)
		}
	})
	t.Run(fe+"/unary-error", func(t *testing.T) {
		t.Parallel()
		msg := "denied: ünïcode, 100% \t tab"
		_, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.PermissionDenied), Message: msg}})
		wantStatus(t, err, codes.PermissionDenied, msg)
	})
	t.Run(fe+"/trailers-only", func(t *testing.T) {
		t.Parallel()
		err := cc.Invoke(ctx, trailersOnlyMethod, &testpb.Empty{}, &testpb.Empty{})
		if native {
			wantStatus(t, err, codes.Unimplemented, "unknown service xdpnet.test.Gone")
		} else {
			wantStatus(t, err, codes.NotFound, "nothing here: 100%")
		}
	})
	t.Run(fe+"/server-stream", func(t *testing.T) {
		t.Parallel()
		stream, err := tc.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 70000}, {Size: 0}, {Size: 5}},
			ResponseStatus:     &testpb.EchoStatus{Code: int32(codes.DataLoss), Message: "after the stream"},
		})
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for {
			m, err := stream.Recv()
			if err != nil {
				wantStatus(t, err, codes.DataLoss, "after the stream")
				break
			}
			sizes = append(sizes, len(m.GetPayload().GetBody()))
		}
		if fmt.Sprint(sizes) != "[1 70000 0 5]" {
			t.Fatalf("message sizes %v", sizes)
		}
	})
	t.Run(fe+"/client-stream", func(t *testing.T) {
		t.Parallel()
		stream, err := tc.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for i := range 20 {
			if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: payload(int32(i * 1000))}); err != nil {
				t.Fatal(err)
			}
			want += i * 1000
		}
		r, err := stream.CloseAndRecv()
		if err != nil || int(r.AggregatedPayloadSize) != want {
			t.Fatalf("got %v %v, want %d bytes", r, err, want)
		}
	})
	t.Run(fe+"/bidi", func(t *testing.T) {
		t.Parallel()
		stream, err := tc.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i)}}}); err != nil {
				t.Fatal(err)
			}
			m, err := stream.Recv()
			if err != nil || len(m.GetPayload().GetBody()) != i {
				t.Fatalf("round %d: %v %v", i, m, err)
			}
		}
		// The server ends the call with an error status mid-stream.
		if err := stream.Send(&testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{{Size: 3}},
			ResponseStatus:     &testpb.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "stop"},
		}); err != nil {
			t.Fatal(err)
		}
		if m, err := stream.Recv(); err != nil || len(m.GetPayload().GetBody()) != 3 {
			t.Fatalf("last message: %v %v", m, err)
		}
		_, err = stream.Recv()
		wantStatus(t, err, codes.FailedPrecondition, "stop")
	})
	t.Run(fe+"/bidi-quiet-client", func(t *testing.T) {
		// The client sends nothing for longer than the body timeout
		// (2s) while the server streams to it: a live stream, not a
		// stalled upload.
		t.Parallel()
		stream, err := tc.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		params := longStream()[:12] // 3.6s
		if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: params}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for i := range params {
			if _, err := stream.Recv(); err != nil {
				t.Fatalf("message %d after %v: %v", i, time.Since(start), err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of call: %v", err)
		}
	})
	t.Run(fe+"/headers-before-messages", func(t *testing.T) {
		// The server sends its headers and then nothing for 30s: the
		// client sees them at once (grpc-go's Header() waits for them).
		// Not parallel: it ends by cancelling.
		cctx, ccancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "x-headers-first", "1"), 10*time.Second)
		defer ccancel()
		stream, err := tc.StreamingOutputCall(cctx, &testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{{Size: 1, IntervalUs: 30_000_000}}})
		if err != nil {
			t.Fatal(err)
		}
		md, err := stream.Header()
		if err != nil || len(md.Get("x-early")) != 1 {
			t.Fatalf("headers %v: %v", md, err)
		}
		ccancel()
		waitCancelled(t, svc, "StreamingOutputCall")
	})
	t.Run(fe+"/cancel", func(t *testing.T) {
		// Not parallel: the cancelled calls are told apart by method.
		cctx, ccancel := context.WithCancel(ctx)
		defer ccancel()
		stream, err := tc.FullDuplexCall(cctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		ccancel()
		waitCancelled(t, svc, "FullDuplexCall")
		_, err = stream.Recv()
		if status.Code(err) != codes.Canceled {
			t.Fatalf("client got %v, want Canceled", err)
		}
	})
}

// httpsClient is a net/http client of the https frontend over HTTP/2
// (h2) or HTTP/1.1, from the client namespace, trusting roots.
func httpsClient(env *enginelab.Env, roots *x509.CertPool, h2 bool) *http.Client {
	var p http.Protocols
	p.SetHTTP1(!h2)
	p.SetHTTP2(h2)
	tr := &http.Transport{DialContext: env.Dial, Protocols: &p,
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// h3GRPC sends one gRPC request (msg in gRPC's length-prefixed framing,
// content-type application/grpc, TE: trailers) over HTTP/3 through the h3
// frontend and returns the response, whose status must be 200 and
// content-type application/grpc.
func h3GRPC(ctx context.Context, c *http.Client, env *enginelab.Env, path string, msg proto.Message, trailer http.Header) (*http.Response, error) {
	b, err := proto.Marshal(msg)
	if err != nil {
		return nil, err
	}
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b)))
	frame = append(frame, b...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, env.FrontendURL("h3")+path, bytes.NewReader(frame))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Trailer = trailer
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/grpc" {
		resp.Body.Close()
		return nil, fmt.Errorf("status %d, content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, nil
}

// readGRPCMessage reads one length-prefixed gRPC message from r into m;
// io.EOF at a message boundary.
func readGRPCMessage(r io.Reader, m proto.Message) error {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	if hdr[0] != 0 {
		return fmt.Errorf("compressed flag %d", hdr[0])
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("message body: %w", err)
	}
	return proto.Unmarshal(b, m)
}

// trailerExchange POSTs body (length -1: streamed, chunked on HTTP/1.1)
// with TE: trailers and a request trailer to a trailer echo behind the
// gateway, and checks that the client spoke HTTP/major, the body came back,
// the backend saw TE: trailers and the response trailers carry the body's
// length and the echoed request trailer.
func trailerExchange(t *testing.T, ctx context.Context, c *http.Client, url, body string, length int64, major int) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, io.NopCloser(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Te", "trailers")
	if major == 1 {
		req.Header.Set("Connection", "TE") // RFC 9110 section 10.1.4
	}
	req.Trailer = http.Header{"X-Checksum": {"c0ffee"}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != major {
		t.Errorf("spoke %s", resp.Proto)
	}
	if err != nil || resp.StatusCode != http.StatusOK || string(got) != body {
		t.Fatalf("status %d, body %q, %v", resp.StatusCode, got, err)
	}
	if te := resp.Header.Get("X-Backend-Te"); te != "trailers" {
		t.Errorf("backend saw TE %q, want trailers", te)
	}
	if resp.Trailer.Get("X-Body-Bytes") != fmt.Sprint(len(body)) || resp.Trailer.Get("X-Echo-X-Checksum") != "c0ffee" {
		t.Fatalf("response trailers %v (headers %v)", resp.Trailer, resp.Header)
	}
}

// TestTrailersGateway sends request trailers and checks response trailers
// and the TE field through the http (HTTP/1.1 chunked, h2c) and h3
// frontends, with Go's clients, curl and nghttp; and checks that a
// response the backend breaks off reaches the client as broken.
func TestTrailersGateway(t *testing.T) {
	env, svc, roots := startGRPCLab(t)
	const body = "hello, trailers"
	h3c, done, err := env.HTTP3Client()
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	clients := []struct {
		name   string
		c      *http.Client
		url    string
		length int64 // -1: streamed (chunked on HTTP/1.1)
		major  int   // the HTTP version the client must have spoken
	}{
		{"http1.1-chunked", env.HTTPClient(1, false), env.FrontendURL("http"), -1, 1},
		{"h2c-streamed", env.HTTPClient(1, true), env.FrontendURL("http"), -1, 2},
		{"h2c-sized", env.HTTPClient(1, true), env.FrontendURL("http"), int64(len(body)), 2},
		{"h3-streamed", h3c, env.FrontendURL("h3"), -1, 3},
		{"h3-sized", h3c, env.FrontendURL("h3"), int64(len(body)), 3},
		{"https-h2", httpsClient(env, roots, true), "https://198.18.1.1:8444", -1, 2},
		{"https-http1.1", httpsClient(env, roots, false), "https://198.18.1.1:8444", -1, 1},
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			trailerExchange(t, context.Background(), cl.c, cl.url+"/echo", body, cl.length, cl.major)
		})
	}

	bodyFile := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(bodyFile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("curl-http1.1", func(t *testing.T) {
		out, err := runIn(t, env.StartClient, 15*time.Second, "curl", "-sS", "--http1.1", "--max-time", "10",
			"-D", "-", "-o", "/dev/null", "-H", "TE: trailers", "-H", "Connection: TE", "--data-binary", "@"+bodyFile,
			env.FrontendURL("http")+"/echo")
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		// curl prints the trailer section after the header section.
		_, trailers, _ := strings.Cut(out, "\r\n\r\n")
		if !strings.Contains(out, "X-Backend-Te: trailers") || !strings.Contains(trailers, fmt.Sprintf("X-Body-Bytes: %d", len(body))) {
			t.Fatalf("curl output:\n%s", out)
		}
	})
	t.Run("nghttp-h2c", func(t *testing.T) {
		out, err := runIn(t, env.StartClient, 15*time.Second, "nghttp", "-v", "-t", "10",
			"-H", "te: trailers", "-d", bodyFile, env.FrontendURL("http")+"/echo")
		if err != nil {
			t.Fatalf("nghttp: %v\n%s", err, out)
		}
		// nghttp prints a frame's fields before the frame: the trailers
		// come after the DATA frame, in the HEADERS frame ending the stream.
		i := strings.LastIndex(out, "recv DATA frame")
		if i < 0 || !strings.Contains(out[i:], fmt.Sprintf("x-body-bytes: %d", len(body))) ||
			!strings.Contains(out, "x-backend-te: trailers") {
			t.Fatalf("nghttp output:\n%s", out)
		}
	})
	// A body the backend broke off must not look complete: curl fails
	// with "partial file" on HTTP/1.1 (no last chunk) and a stream error
	// on HTTP/2 (RST_STREAM) once the origin resets its stream.
	for _, proto := range []string{"--http1.1", "--http2-prior-knowledge"} {
		t.Run("broken"+proto, func(t *testing.T) {
			wantBroken(t, env, proto, env.FrontendURL("http")+"/broken", svc.release)
		})
	}
}

// wantBroken GETs url (served by brokenBody) with curl over proto
// (--http1.1, --http2-prior-knowledge), lets the origin break its response
// off once curl has the first 1000 bytes (release), and fails t unless
// curl fails: a response the backend broke off must not look complete.
func wantBroken(t *testing.T, env *enginelab.Env, proto, url string, release chan<- struct{}) {
	t.Helper()
	cmd := exec.Command(needTool(t, "curl"), "-sS", "-N", proto, "--max-time", "10", url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := env.StartClient(cmd); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // by PID; a no-op once it exited
	if _, err := io.ReadFull(stdout, make([]byte, 1000)); err != nil {
		t.Fatalf("the first 1000 bytes: %v (%s)", err, stderr.String())
	}
	release <- struct{}{}
	io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if err == nil {
		t.Fatalf("curl took a response the backend broke off as complete")
	}
	t.Logf("curl: %v: %s", err, strings.TrimSpace(stderr.String()))
}

// grpcH2CConfig puts the h2c and h3 frontends in front of an h2c backend:
// grpc-go's own HTTP/2 server (grpc.Server.Serve on a TCP listener) as a
// plain h2c origin. Health checks are off: they GET a path, which a gRPC
// server answers with an error. /echo goes to another h2c backend, Go's
// HTTP/2 server (echoTrailers), for plain trailers.
const grpcH2CConfig = `dataplane: xdp
admin: 127.0.0.1:0
interfaces:
  - {name: veth-client, queues: [0], addresses: [198.18.1.1/24]}
  - {name: veth-backend, queues: [0], addresses: [198.18.2.1/24]}
frontends:
  - {name: http, listen: "198.18.1.1:8080", protocol: http, backend: grpc, timeouts: {idle: 2s, body: 2s},
     routes: [{path_prefix: /echo, backend: plain}]}
  - {name: h3, listen: "198.18.1.1:8443", protocol: h3, backend: grpc, timeouts: {idle: 2s, body: 2s},
     routes: [{path_prefix: /echo, backend: plain}]}
backends:
  - name: grpc
    protocol: h2c
    health_check: {enabled: false}
    timeouts: {connect: 1s, idle: 2s, request: 2s}
    servers:
      - {name: s0, address: "198.18.2.10:50051"}
  - name: plain
    protocol: h2c
    health_check: {enabled: false}
    servers:
      - {name: s0, address: "198.18.2.11:8080"}
`

// TestGRPCH2CBackend runs the grpc-go calls through the h2c frontend, and
// gRPC framing over HTTP/3 through the h3 frontend, to grpc-go's own
// HTTP/2 server behind an h2c backend; and request and response trailers
// to Go's HTTP/2 server behind another.
func TestGRPCH2CBackend(t *testing.T) {
	svc := &testService{cancelled: make(chan string, 16)}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, svc)
	hs := healthgrpc.NewServer()
	hs.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	env := startLab(t, "xdp", enginelab.Options{
		Config:    grpcH2CConfig,
		NoOrigins: true,
		BeforeEngine: func(l *lab.Lab) error {
			var ln net.Listener
			if err := l.Backend.Do(func() (err error) {
				ln, err = net.Listen("tcp", "198.18.2.10:50051")
				return err
			}); err != nil {
				return err
			}
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			plain := &http.Server{Handler: http.HandlerFunc(echoTrailers), Protocols: &p}
			var pln net.Listener
			if err := l.Backend.Do(func() (err error) {
				pln, err = net.Listen("tcp", "198.18.2.11:8080")
				return err
			}); err != nil {
				ln.Close()
				return err
			}
			var serving sync.WaitGroup
			serving.Go(func() { gs.Serve(ln) })
			serving.Go(func() { plain.Serve(pln) })
			t.Cleanup(func() {
				gs.Stop()     // closes ln
				plain.Close() // closes pln
				serving.Wait()
			})
			return nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)

	grpcGoCalls(t, ctx, grpcClient(t, env, "198.18.1.1:8080", nil), svc, "h2c", true)
	h3c, done, err := env.HTTP3Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(done)
	for _, cl := range []struct {
		name string
		c    *http.Client
		url  string
	}{
		{"http1.1", env.HTTPClient(1, false), env.FrontendURL("http")},
		{"h2c", env.HTTPClient(1, true), env.FrontendURL("http")},
		{"h3", h3c, env.FrontendURL("h3")},
	} {
		t.Run("trailers/"+cl.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, cl.url+"/echo", io.NopCloser(strings.NewReader("abc")))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = -1
			req.Trailer = http.Header{"X-Checksum": {"c0ffee"}}
			resp, err := cl.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(got) != "abc" {
				t.Fatalf("body %q %v", got, err)
			}
			if resp.Trailer.Get("X-Body-Bytes") != "3" || resp.Trailer.Get("X-Echo-X-Checksum") != "c0ffee" {
				t.Fatalf("response trailers %v (headers %v)", resp.Trailer, resp.Header)
			}
		})
	}
	t.Run("h3/unary", func(t *testing.T) {
		t.Parallel()
		h3NativeUnary(t, ctx, env)
	})
}

// h3NativeUnary sends gRPC unary calls in gRPC's framing over HTTP/3
// through the h3 frontend to grpc-go's own HTTP/2 server behind a TCP
// backend: a message and grpc-status 0 in the trailers, then an unknown
// method, which that server answers trailers-only (grpc-status 12 in the
// headers, no trailers).
func h3NativeUnary(t *testing.T, ctx context.Context, env *enginelab.Env) {
	c, done, err := env.HTTP3Client()
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	resp, err := h3GRPC(ctx, c, env, "/grpc.testing.TestService/UnaryCall", &testpb.SimpleRequest{ResponseSize: 20000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m testpb.SimpleResponse
	if err := readGRPCMessage(resp.Body, &m); err != nil || len(m.GetPayload().GetBody()) != 20000 {
		t.Fatalf("response %v %v", m.GetPayload() != nil, err)
	}
	if err := readGRPCMessage(resp.Body, &m); !errors.Is(err, io.EOF) || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("end: %v, trailers %v", err, resp.Trailer)
	}
	// grpc-go's trailers-only answer to an unknown method.
	resp, err = h3GRPC(ctx, c, env, trailersOnlyMethod, &testpb.Empty{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := readGRPCMessage(resp.Body, &m); !errors.Is(err, io.EOF) {
		t.Fatalf("trailers-only response: %v", err)
	}
	if resp.Header.Get("Grpc-Status") != "12" || len(resp.Trailer) != 0 {
		t.Fatalf("headers %v, trailers %v", resp.Header, resp.Trailer)
	}
}

// h3LongStream runs a server stream longer than every 2s timeout of the
// lab (longStream) in gRPC's framing over HTTP/3 through the h3 frontend:
// 40 messages, then grpc-status 0.
func h3LongStream(t *testing.T, ctx context.Context, env *enginelab.Env) {
	c, done, err := env.HTTP3Client()
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	c.Timeout = 0 // the context bounds the call
	start := time.Now()
	resp, err := h3GRPC(ctx, c, env, "/grpc.testing.TestService/StreamingOutputCall",
		&testpb.StreamingOutputCallRequest{ResponseParameters: longStream()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	for {
		var m testpb.StreamingOutputCallResponse
		if err := readGRPCMessage(resp.Body, &m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("after %d messages, %v: %v", n, time.Since(start), err)
		}
		n++
	}
	if n != 40 || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("%d messages, want 40; trailers %v", n, resp.Trailer)
	}
}

// h3Cancel starts a server stream over HTTP/3 through the h3 frontend,
// takes its first message and cancels the request (an HTTP/3 stream
// reset): the server must see its call's context end.
func h3Cancel(t *testing.T, ctx context.Context, env *enginelab.Env, svc *testService) {
	c, done, err := env.HTTP3Client()
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	resp, err := h3GRPC(cctx, c, env, "/grpc.testing.TestService/StreamingOutputCall",
		&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 10, IntervalUs: 30_000_000}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m testpb.StreamingOutputCallResponse
	if err := readGRPCMessage(resp.Body, &m); err != nil {
		t.Fatal(err)
	}
	ccancel()
	waitCancelled(t, svc, "StreamingOutputCall")
}
