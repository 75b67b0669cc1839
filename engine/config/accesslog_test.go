package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParseConfigAccessLog(t *testing.T) {
	c, err := Parse([]byte(goodConfig + "access_log: {path: stdout}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.AccessLog; *a.Sample != 1 || a.Queue != 4096 {
		t.Errorf("defaults: sample %v queue %d", *a.Sample, a.Queue)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"no path", "access_log: {sample: 0.5}\n", "access_log.path: missing"},
		{"no directory", "access_log: {path: /nonexistent/dir/a.log}\n", `access_log.path: directory of "/nonexistent/dir/a.log" does not exist`},
		{"sample 0", "access_log: {path: stdout, sample: 0}\n", "access_log.sample: 0 is outside (0, 1]"},
		{"sample 2", "access_log: {path: stdout, sample: 2}\n", "access_log.sample: 2 is outside (0, 1]"},
		{"queue", "access_log: {path: stdout, queue: -1}\n", "access_log.queue: -1 is outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(goodConfig + tc.text))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
