package frontend

import (
	"io"
	"testing"

	"github.com/xdpnet/xdpnet/engine/accesslog"
	"github.com/xdpnet/xdpnet/engine/config"
	"github.com/xdpnet/xdpnet/engine/stats"
)

// A frontend with access_log: false logs nothing; one without the key
// logs; without an engine access log nobody does.
func TestAccessLoggerOptOut(t *testing.T) {
	var drops stats.Counter
	l, err := accesslog.New(accesslog.Options{Path: accesslog.Stdout, Sample: 1, Queue: 1, Stdout: io.Discard, Dropped: &drops})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	env := &Env{}
	off, on := false, true
	for _, tc := range []struct {
		flag *bool
		want bool
	}{{nil, true}, {&on, true}, {&off, false}} {
		fe := &Frontend{cfg: config.Frontend{AccessLog: tc.flag}, env: env}
		env.AccessLog.Store(nil)
		if fe.accessLogger() != nil {
			t.Errorf("access_log %v without an engine log: logs", tc.flag)
		}
		env.AccessLog.Store(l)
		if got := fe.accessLogger() != nil; got != tc.want {
			t.Errorf("access_log %v: logs %v, want %v", tc.flag, got, tc.want)
		}
	}
}
