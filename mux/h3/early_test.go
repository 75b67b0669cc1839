package h3

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestCanSendEarly: only GET and HEAD without a body go in 0-RTT data
// (RFC 9110 section 9.2.1 safe methods quic-go can send early).
func TestCanSendEarly(t *testing.T) {
	for _, tc := range []struct {
		method string
		body   bool
		want   bool
	}{
		{http.MethodGet, false, true},
		{http.MethodHead, false, true},
		{http.MethodGet, true, false},
		{http.MethodOptions, false, false},
		{http.MethodPost, false, false},
		{http.MethodPut, true, false},
		{http.MethodDelete, false, false},
	} {
		var body io.Reader
		if tc.body {
			body = strings.NewReader("x")
		}
		req, err := http.NewRequest(tc.method, "https://backend.lab/", body)
		if err != nil {
			t.Fatal(err)
		}
		if got := CanSendEarly(req); got != tc.want {
			t.Errorf("%s (body %v): CanSendEarly %v, want %v", tc.method, tc.body, got, tc.want)
		}
	}
}
