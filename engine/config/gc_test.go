package config

import (
	"strings"
	"testing"
)

func TestGCKeys(t *testing.T) {
	for _, tc := range []struct {
		edit        string
		wantPercent int
		wantLimit   Size
		wantErr     string
	}{
		{"", 0, 0, ""},
		{"gc: {percent: 150}\n", 150, 0, ""},
		{"gc: {percent: -1, memory_limit: 512MiB}\n", -1, 512 << 20, ""},
		{"gc: {memory_limit: 1GB}\n", 0, 1e9, ""},
		{"gc: {percent: -1}\n", 0, 0, "gc.percent: -1 (off) needs gc.memory_limit"},
		{"gc: {percent: -2}\n", 0, 0, "gc.percent: -2 must be -1"},
		{"gc: {memory_limit: much}\n", 0, 0, `"much" is not a size`},
	} {
		c, err := Parse([]byte(goodConfig + tc.edit))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.edit, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.edit, err)
			continue
		}
		if c.GC.Percent != tc.wantPercent || c.GC.MemoryLimit != tc.wantLimit {
			t.Errorf("%q: gc %+v, want percent %d, memory_limit %d", tc.edit, c.GC, tc.wantPercent, tc.wantLimit)
		}
	}
}
