package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `
dataplane: kernel
admin: "127.0.0.1:0"
frontends: [{name: web, listen: "127.0.0.1:0", protocol: http, backend: b}]
backends: [{name: b, servers: [{address: "127.0.0.1:4433"}]}]
`)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no command", nil, 2, []string{"usage: xdpnet"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{`unknown command "frobnicate"`}},
		{"bad flag", []string{"run", "-x"}, 2, []string{"flag provided but not defined"}},
		{"run without -c", []string{"run"}, 2, []string{"-c FILE is required"}},
		{"missing file", []string{"run", "-c", filepath.Join(dir, "nope.yaml")}, 2, []string{"no such file"}},
		{"unknown field", []string{"run", "-c", write("a.yaml", "dataplane: kernel\nfrontend: []\n")}, 2, []string{"field frontend not found"}},
		{"every bad field named", []string{"run", "-c", write("b.yaml", `
dataplane: kernel
admin: nowhere
frontends: [{listen: "127.0.0.1:80", protocol: gopher, backend: missing}]
backends: [{name: b, balance: random, servers: [{address: "10.0.0.1"}]}]
`)}, 2, []string{"admin: \"nowhere\" is not ip:port", "frontends[0].protocol: \"gopher\"", "frontends[0].backend: no backend named \"missing\"",
			"backends[0].balance: \"random\" is not one of", "backends[0].servers[0].address: \"10.0.0.1\" is not ip:port"}},
		{"check good", []string{"run", "-check", "-c", good}, 0, []string{"configuration ok"}},
		{"missing certificate", []string{"run", "-check", "-c", write("c.yaml", `
dataplane: kernel
frontends: [{listen: "127.0.0.1:0", protocol: https, backend: b, tls: {cert: `+filepath.Join(dir, "nope.pem")+`, key: k.pem}}]
backends: [{name: b, servers: [{address: "127.0.0.1:4433"}]}]
`)}, 2, []string{"frontends[0].tls: open " + filepath.Join(dir, "nope.pem") + ": no such file or directory"}},
		{"stats bad address", []string{"stats", "-admin", "127.0.0.1:1"}, 1, []string{"admin endpoint"}},
		{"demo bad stack", []string{"demo", "-stack", "dpdk"}, 2, []string{"-stack must be xdp or kernel"}},
		{"origin bad listen", []string{"origin", "-listen", "here"}, 2, []string{"-listen"}},
		{"help", []string{"help"}, 0, []string{"usage: xdpnet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, &out, &errb)
			all := out.String() + errb.String()
			if code != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.code, all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output does not mention %q:\n%s", w, all)
				}
			}
		})
	}
}
