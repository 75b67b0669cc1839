package frontend

import "testing"

func TestFramingScan(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		bad  bool
	}{
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", false},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false},
		{"both", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"both, other case and order", "POST / HTTP/1.1\r\ntransfer-ENCODING: chunked\r\nCONTENT-LENGTH: 5\r\n\r\n0\r\n\r\n", true},
		{"both, bare LF", "POST / HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\n\n", true},
		{"pipelined after a clean one", "GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"in different sections", "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"HTTP/1.0 chunked", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"HTTP/1.0 length", "POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\na", false},
		{"field name in a value", "GET / HTTP/1.1\r\nX-A: Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"leading empty lines", "\r\n\r\nPOST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", true},
	} {
		// Whole, then byte by byte: reads split anywhere.
		for _, step := range []int{len(tc.in), 1, 7} {
			var s framingScan
			for b := []byte(tc.in); len(b) > 0; {
				n := min(step, len(b))
				s.scan(b[:n])
				b = b[n:]
			}
			if got := s.bad.Load(); got != tc.bad {
				t.Errorf("%s (reads of %d): bad %v, want %v", tc.name, step, got, tc.bad)
			}
		}
	}
}
