package stack_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// iperfServer is the server half of the iperf3 protocol (TCP tests only,
// forward or reverse), enough for the stock iperf3 client to measure a
// netstack listener, which the iperf3 binary cannot serve itself. It counts
// the bytes it receives (or sends with -R) and reports them back like
// iperf3 -s, so the client's figures are the usual ones.
//
// Protocol (esnet/iperf, iperf_server_api.c): the client opens a control
// connection and sends a 37-byte cookie; the server answers state bytes and
// exchanges length-prefixed JSON: PARAM_EXCHANGE, CREATE_STREAMS (the
// client opens the data connections, each starting with the cookie),
// TEST_START, TEST_RUNNING; the client ends with TEST_END, then
// EXCHANGE_RESULTS (client results, then ours), DISPLAY_RESULTS, IPERF_DONE.
type iperfServer struct {
	l     net.Listener
	bytes atomic.Int64 // payload bytes of the last test
	dur   atomic.Int64 // its duration, ns
	tests atomic.Int64
	wg    sync.WaitGroup
	errs  chan error
}

const (
	iperfTestStart       = 1
	iperfTestRunning     = 2
	iperfTestEnd         = 4
	iperfParamExchange   = 9
	iperfCreateStreams   = 10
	iperfExchangeResults = 13
	iperfDisplayResults  = 14
	iperfDone            = 16
	iperfCookieSize      = 37
)

func newIperfServer(l net.Listener) *iperfServer {
	s := &iperfServer{l: l, errs: make(chan error, 16)}
	s.wg.Add(1)
	go s.serve()
	return s
}

// Close stops the server and returns the first error a test hit.
func (s *iperfServer) Close() error {
	s.l.Close()
	s.wg.Wait()
	select {
	case err := <-s.errs:
		return err
	default:
		return nil
	}
}

func (s *iperfServer) fail(err error) {
	select {
	case s.errs <- err:
	default:
	}
}

// serve runs tests one after the other, as iperf3 -s does.
func (s *iperfServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		if err := s.test(c); err != nil {
			s.fail(err)
		}
		c.Close()
	}
}

func (s *iperfServer) test(ctrl net.Conn) error {
	_ = ctrl.SetDeadline(time.Now().Add(5 * time.Minute))
	cookie := make([]byte, iperfCookieSize)
	if _, err := io.ReadFull(ctrl, cookie); err != nil {
		return fmt.Errorf("iperf: cookie: %w", err)
	}
	if err := sendState(ctrl, iperfParamExchange); err != nil {
		return err
	}
	var params struct {
		TCP      bool `json:"tcp"`
		Parallel int  `json:"parallel"`
		Reverse  bool `json:"reverse"`
		Len      int  `json:"len"`
	}
	if err := readJSON(ctrl, &params); err != nil {
		return fmt.Errorf("iperf: parameters: %w", err)
	}
	if !params.TCP {
		return errors.New("iperf: only TCP tests are served")
	}
	params.Parallel = max(params.Parallel, 1)
	if params.Len <= 0 {
		params.Len = 128 << 10
	}
	if err := sendState(ctrl, iperfCreateStreams); err != nil {
		return err
	}
	streams := make([]net.Conn, 0, params.Parallel)
	defer func() {
		for _, c := range streams {
			c.Close()
		}
	}()
	for len(streams) < params.Parallel {
		c, err := s.l.Accept()
		if err != nil {
			return fmt.Errorf("iperf: stream accept: %w", err)
		}
		streams = append(streams, c)
		if _, err := io.ReadFull(c, cookie); err != nil {
			return fmt.Errorf("iperf: stream cookie: %w", err)
		}
	}
	if err := sendState(ctrl, iperfTestStart); err != nil {
		return err
	}
	if err := sendState(ctrl, iperfTestRunning); err != nil {
		return err
	}
	start := time.Now()
	counts := make([]atomic.Int64, len(streams))
	var dwg sync.WaitGroup
	stop := make(chan struct{})
	for i, c := range streams {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			buf := make([]byte, params.Len)
			for {
				var n int
				var err error
				if params.Reverse {
					select {
					case <-stop:
						return
					default:
					}
					n, err = c.Write(buf)
				} else {
					n, err = c.Read(buf)
				}
				counts[i].Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	state := make([]byte, 1)
	if _, err := io.ReadFull(ctrl, state); err != nil {
		close(stop)
		return fmt.Errorf("iperf: waiting for TEST_END: %w", err)
	}
	el := time.Since(start)
	close(stop)
	for _, c := range streams {
		c.Close()
	}
	dwg.Wait()
	if state[0] != iperfTestEnd {
		return fmt.Errorf("iperf: state %d, want TEST_END", state[0])
	}
	var total int64
	for i := range counts {
		total += counts[i].Load()
	}
	s.bytes.Store(total)
	s.dur.Store(int64(el))
	if err := sendState(ctrl, iperfExchangeResults); err != nil {
		return err
	}
	var cres struct {
		Streams []struct {
			ID int `json:"id"`
		} `json:"streams"`
	}
	if err := readJSON(ctrl, &cres); err != nil {
		return fmt.Errorf("iperf: client results: %w", err)
	}
	type streamResult struct {
		ID             int     `json:"id"`
		Bytes          int64   `json:"bytes"`
		Retransmits    int     `json:"retransmits"`
		Jitter         float64 `json:"jitter"`
		Errors         int     `json:"errors"`
		OmittedErrors  int     `json:"omitted_errors"`
		Packets        int     `json:"packets"`
		OmittedPackets int     `json:"omitted_packets"`
		StartTime      float64 `json:"start_time"`
		EndTime        float64 `json:"end_time"`
	}
	res := struct {
		CPUTotal   float64        `json:"cpu_util_total"`
		CPUUser    float64        `json:"cpu_util_user"`
		CPUSystem  float64        `json:"cpu_util_system"`
		SenderRetx int            `json:"sender_has_retransmits"`
		Streams    []streamResult `json:"streams"`
		Congestion string         `json:"congestion_used"`
	}{SenderRetx: -1, Congestion: "cubic"}
	for i, cs := range cres.Streams {
		var b int64
		if i < len(counts) {
			b = counts[i].Load()
		}
		res.Streams = append(res.Streams, streamResult{ID: cs.ID, Bytes: b, Retransmits: -1, EndTime: el.Seconds()})
	}
	if err := writeJSON(ctrl, res); err != nil {
		return err
	}
	if err := sendState(ctrl, iperfDisplayResults); err != nil {
		return err
	}
	// IPERF_DONE, or the client just closing, ends the test.
	_, _ = io.ReadFull(ctrl, state)
	s.tests.Add(1)
	return nil
}

func sendState(c net.Conn, st byte) error {
	if _, err := c.Write([]byte{st}); err != nil {
		return fmt.Errorf("iperf: send state %d: %w", st, err)
	}
	return nil
}

func readJSON(c net.Conn, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size == 0 || size > 1<<20 {
		return fmt.Errorf("json of %d bytes", size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(c net.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	if _, err := c.Write(append(out, b...)); err != nil {
		return fmt.Errorf("iperf: send results: %w", err)
	}
	return nil
}
