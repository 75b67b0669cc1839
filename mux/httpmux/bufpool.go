package httpmux

import (
	"bufio"
	"io"
	"sync"
)

// bufPool is a capped free list of the bufio readers and writers of
// HTTP/1.1 connections. A connection takes a pair for a request and gives
// it back when the request ends with the connection idle, so an idle
// connection holds no buffer (HAProxy's dynamic buffers: a connection
// holds one only while it moves data). Past the cap, returned buffers are
// left to the collector.
type bufPool struct {
	max int

	mu sync.Mutex
	// +checklocks:mu
	readers []*bufio.Reader
	// +checklocks:mu
	writers []*bufio.Writer
}

// h1Buffers is the pool of every HTTP/1.1 connection of the process: 256
// pairs of 4 KiB (2 MiB) cover the requests in flight of a busy gateway;
// more at once allocate.
var h1Buffers = &bufPool{max: 256}

// get returns a reader on r and a writer on w, empty.
func (p *bufPool) get(r io.Reader, w io.Writer) (*bufio.Reader, *bufio.Writer) {
	var (
		br *bufio.Reader
		bw *bufio.Writer
	)
	p.mu.Lock()
	if n := len(p.readers); n > 0 {
		br = p.readers[n-1]
		p.readers[n-1] = nil
		p.readers = p.readers[:n-1]
	}
	if n := len(p.writers); n > 0 {
		bw = p.writers[n-1]
		p.writers[n-1] = nil
		p.writers = p.writers[:n-1]
	}
	p.mu.Unlock()
	if br == nil {
		br = bufio.NewReader(r)
	} else {
		br.Reset(r)
	}
	if bw == nil {
		bw = bufio.NewWriter(w)
	} else {
		bw.Reset(w)
	}
	return br, bw
}

// put takes back a reader and a writer that hold no data; neither may be
// used after.
func (p *bufPool) put(br *bufio.Reader, bw *bufio.Writer) {
	br.Reset(nil)
	bw.Reset(nil)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.readers) < p.max {
		p.readers = append(p.readers, br)
	}
	if len(p.writers) < p.max {
		p.writers = append(p.writers, bw)
	}
}
