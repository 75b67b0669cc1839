package engine_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/testutil"
)

// The budget tests' QUIC connections are kept small: 32 KiB receive
// windows and as much send allowance, 64 KiB reserved each.
// budgetQUICRoom is room for the backend connections of a lab with one h3
// origin: its health check's, its pooled one, and one more (a redial).
const (
	budgetQUIC     = "quic_receive: {default: 32KiB, max: 32KiB}, quic_send: 32KiB"
	budgetQUICConn = 64 << 10
	budgetQUICRoom = 3 * budgetQUICConn
)

// h3Conn is one HTTP/3 client connection of quic-go's from the client
// namespace, on a UDP socket of its own.
type h3Conn struct {
	pc net.PacketConn
	tr *quic.Transport
	qc *quic.Conn
	cc *http3.ClientConn
}

// dialH3 opens an HTTP/3 connection to addr; refused is true when the
// engine answered CONNECTION_REFUSED (RFC 9000 section 20.1).
func dialH3(env *enginelab.Env, addr string) (c *h3Conn, refused bool, err error) {
	pc, err := env.ListenPacket()
	if err != nil {
		return nil, false, err
	}
	tr := &quic.Transport{Conn: pc}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, false, err
	}
	qc, err := tr.Dial(ctx, ua, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}, nil)
	if err != nil {
		tr.Close()
		pc.Close()
		var te *quic.TransportError
		if errors.As(err, &te) && te.Remote && te.ErrorCode == quic.ConnectionRefused {
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("h3 dial: %w", err)
	}
	return &h3Conn{pc: pc, tr: tr, qc: qc, cc: (&http3.Transport{}).NewClientConn(qc)}, false, nil
}

func (c *h3Conn) close() {
	c.qc.CloseWithError(0, "")
	c.tr.Close()
	c.pc.Close()
}

// get fetches url on c and returns the status and body; a 503 must name
// the memory budget (Proxy-Status).
func (c *h3Conn) get(url string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.cc.RoundTrip(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable && !strings.Contains(resp.Header.Get("Proxy-Status"), "memory budget") {
		return resp.StatusCode, body, fmt.Errorf("503 without the budget's Proxy-Status: %q", resp.Header.Get("Proxy-Status"))
	}
	return resp.StatusCode, body, err
}

// TestMemoryBudgetQUIC spends buffers.memory with QUIC connections: quic-go
// HTTP/3 clients from the test process through the h3 frontend to
// gtlsserver (ngtcp2, HTTP/3), with room beyond the UMEM for 4 payload
// buffers and 8 QUIC connections of 64 KiB (32 KiB windows), the backend's
// among them. Client connections are opened one at a time and held until
// one is refused: the first refused one waited buffers.accept_wait, every
// refusal is CONNECTION_REFUSED at the client and counted once in
// xdpnet_connections_refused_total{frontend="h3",reason="budget"}, and
// each held connection reserves exactly its 64 KiB. Every admitted
// connection is then served (200 with the page intact, or a counted 503
// no_buffer when its backend connection found no room). A request to a
// second backend, not connected yet, waits for its dial's reservation and
// gets 503 no_buffer; its server is not marked down. Once the clients
// close, every client reservation is back and the second backend serves
// (recovery); a drain with a connection waiting for room ends that wait
// and leaves no reservation, client or backend.
func TestMemoryBudgetQUIC(t *testing.T) {
	const page = 64 << 10
	const attempts = 12
	more := `  - {name: h3, listen: "198.18.1.1:8443", protocol: h3, backend: origins, routes: [{name: second, path_prefix: /second/, backend: second}]}` + "\n"
	second := "backends:\n  - name: second\n    protocol: h3\n    tls: {insecure_skip_verify: true}\n    health_check: {enabled: false}\n" +
		"    timeouts: {connect: 1s}\n    servers:\n      - {name: s0, address: \"198.18.2.10:443\"}\n"
	room := 4*config.PayloadBufferSize + 8*budgetQUICConn
	f := startFaultLab(t, faultOpts{kinds: []originKind{gtlsserver}, moreFrontends: more,
		top:  fmt.Sprintf("buffers: {memory: %d, accept_wait: 4s, %s, tcp_receive: {default: 4KiB, max: 4KiB}, tcp_send: {default: 4KiB, max: 4KiB}}\n", budgetUMEM+room, budgetQUIC),
		edit: []string{"backends:\n", second}})
	body := bytes.Repeat([]byte("0123456789abcdef"), page/16)
	if err := os.MkdirAll(filepath.Join(f.files.dir, "second"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"page.bin", "second/page.bin"} {
		if err := os.WriteFile(filepath.Join(f.files.dir, p), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := f.env
	addr := strings.TrimPrefix(env.FrontendURL("h3"), "https://")
	url := env.FrontendURL("h3") + "/page.bin"
	engine := func() (client, backend, waiting int64) {
		s := env.Engine.Stats().Engine
		return s.QUIC.ReservedBytes, s.QUIC.BackendReservedBytes, s.TCP.Waiting
	}
	refusals := func() float64 {
		n, _ := metricSum(metricsText(t, env), regexp.MustCompile(`^xdpnet_connections_refused_total$`), `frontend="h3"`, `reason="budget"`)
		return n
	}
	noBuffer := func() float64 {
		n, _ := metricSum(metricsText(t, env), regexp.MustCompile(`^xdpnet_requests_total$`), `frontend="h3"`, `result="no_buffer"`)
		return n
	}
	check := func(c *h3Conn, url string) (int, error) {
		status, got, err := c.get(url)
		if err == nil && status == http.StatusOK && !bytes.Equal(got, body) {
			err = fmt.Errorf("a damaged body: %d bytes", len(got))
		}
		if err == nil && status != http.StatusOK && status != http.StatusServiceUnavailable {
			err = fmt.Errorf("status %d", status)
		}
		return status, err
	}

	// open dials one client connection, failing the test on anything
	// but an admission or a refusal.
	open := func() (*h3Conn, bool) {
		t.Helper()
		c, refused, err := dialH3(env, addr)
		if err != nil {
			t.Fatal(err)
		}
		return c, refused
	}

	// Warm-up: the origins backend's pooled connection, while there is
	// room; the client connection's reservation is back when it closes.
	c, refused := open()
	if refused {
		t.Fatal("the first connection was refused")
	}
	if status, err := check(c, url); err != nil || status != http.StatusOK {
		t.Fatalf("warm-up: %d, %v", status, err)
	}
	if cl, _, _ := engine(); cl != budgetQUICConn {
		t.Errorf("one client connection reserves %d bytes, want %d", cl, budgetQUICConn)
	}
	c.close()
	testutil.WaitFor(t, "the warm-up connection's reservation back", func() bool { cl, _, _ := engine(); return cl == 0 })
	if _, be, _ := engine(); be == 0 || be%budgetQUICConn != 0 {
		t.Errorf("backend QUIC connections reserve %d bytes, want a positive multiple of %d", be, budgetQUICConn)
	}

	// Client connections, one at a time, each held and served once (a
	// 200 with the page intact, or a counted 503 when its request needed
	// a backend connection the budget had no room for).
	var held []*h3Conn
	defer func() {
		for _, c := range held {
			c.close()
		}
	}()
	refusedN, before, nb := 0, refusals(), noBuffer()
	var statuses []int
	for range attempts {
		c, refused := open()
		if refused {
			refusedN++
			continue
		}
		held = append(held, c)
		st, err := check(c, url)
		if err != nil {
			t.Errorf("held connection %d: %v", len(held), err)
		}
		statuses = append(statuses, st)
	}
	admitted := len(held)
	if admitted == 0 || refusedN == 0 {
		t.Fatalf("%d connections admitted, %d refused: the budget was not spent", admitted, refusedN)
	}
	if statuses[0] != http.StatusOK {
		t.Errorf("the first held connection was not served on a budget with room: %v", statuses)
	}
	if got := refusals() - before; int(got) != refusedN {
		t.Errorf("the engine counted %v budget refusals, the clients saw %d", got, refusedN)
	}
	s := env.Engine.Stats().Engine
	if s.QUIC.ReservedBytes != int64(admitted)*budgetQUICConn || s.TCP.Waits == 0 || s.Payload.LiveBytes > s.Payload.LimitBytes {
		t.Errorf("%d connections held: %+v, reservation waits %d, payload %+v", admitted, s.QUIC, s.TCP.Waits, s.Payload)
	}
	fives := 0
	for _, st := range statuses {
		if st == http.StatusServiceUnavailable {
			fives++
		}
	}
	// A backend that has no connection yet: its dial waits for room
	// (timeouts.connect), then the request gets 503 no_buffer.
	st, err := check(held[0], env.FrontendURL("h3")+"/second/page.bin")
	if err != nil || st != http.StatusServiceUnavailable {
		t.Errorf("request needing a new backend connection on a spent budget: %d, %v", st, err)
	}
	fives++
	testutil.WaitFor(t, "the 503s counted", func() bool { return int(noBuffer()-nb) == fives })
	if s := env.Engine.Stats(); s.ServersUp != s.Servers {
		t.Errorf("servers marked down by a spent budget: %d of %d up", s.ServersUp, s.Servers)
	}

	// The clients leave: every client reservation comes back, and the
	// second backend serves.
	for _, c := range held {
		c.close()
	}
	held = nil
	testutil.WaitFor(t, "every client reservation back", func() bool { cl, _, _ := engine(); return cl == 0 })
	c, refused = open()
	if refused {
		t.Fatal("a connection refused after the load")
	}
	held = append(held, c)
	if st, err := check(c, env.FrontendURL("h3")+"/second/page.bin"); err != nil || st != http.StatusOK {
		t.Errorf("the second backend after the load: %d, %v", st, err)
	}

	// Drain with the budget spent and a connection waiting for room: fill
	// the budget until a connection is refused, then swap one held
	// connection for a new one (admitted at once: the next one waits).
	for range attempts {
		c, refused := open()
		if refused {
			break
		}
		held = append(held, c)
	}
	held[len(held)-1].close()
	held = held[:len(held)-1]
	testutil.WaitFor(t, "a reservation back", func() bool {
		c, refused, err := dialH3(env, addr)
		if c != nil {
			held = append(held, c)
		}
		return err == nil && !refused
	})
	waiter := make(chan error)
	go func() {
		c, refused, err := dialH3(env, addr)
		if c != nil {
			c.close()
			err = errors.New("admitted")
		} else if err == nil && !refused {
			err = errors.New("neither admitted nor refused")
		}
		waiter <- err
	}()
	testutil.WaitFor(t, "a connection waiting for room", func() bool { _, _, w := engine(); return w > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.Engine.Shutdown(ctx); err != nil {
		t.Errorf("drain: %v", err)
	}
	if err := <-waiter; err != nil {
		t.Errorf("the connection waiting at the drain: %v", err)
	}
	var last [3]int64
	if !testutil.Eventually(func() bool {
		cl, be, w := engine()
		last = [3]int64{cl, be, w}
		return cl == 0 && be == 0 && w == 0
	}) {
		t.Errorf("after the drain: client %d, backend %d bytes reserved, %d waiting", last[0], last[1], last[2])
	}
	if p := env.Engine.Stats().Engine.Payload; p.InUse != 0 || p.Gets != p.Puts {
		t.Errorf("payload buffers after the drain: %+v", p)
	}
	t.Logf("FIGURES quic-budget room=%dKiB conn=%dKiB admitted=%d refused=%d/%d statuses=%v 503s=%d", room>>10, budgetQUICConn>>10, admitted, refusedN, attempts, statuses, fives)
}
