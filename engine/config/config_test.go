package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
dataplane: xdp
admin: 127.0.0.1:9900
interfaces:
  - name: xdpc0
    queues: [0, 1]
    addresses: [198.18.1.1/24, "2001:2:0:1::1/64"]
  - name: xdpb0
    queues: [0]
    xdp_mode: native
    zero_copy: "off"
    addresses: [198.18.2.1/24]
    gateway: 198.18.2.254
frontends:
  - {name: web, listen: "198.18.1.1:80", protocol: http, backend: origins}
  - {name: web3, listen: "198.18.1.1:443", protocol: h3, backend: origins}
  - {name: iperf, listen: "198.18.1.1:5201", protocol: tcp, backend: tunnel}
backends:
  - name: origins
    balance: hash
    hash_key: "header:X-User"
    reuse: {policy: aggressive, max_idle: 2, max_streams: 50}
    servers:
      - {name: s1, address: "198.18.2.10:4433", weight: 3}
      - {address: "198.18.2.11:4433"}
  - name: tunnel
    protocol: raw
    balance: leastconn
    timeouts: {connect: 500ms}
    servers: [{address: "198.18.2.10:4433"}]
`

// Every HTTP backend protocol serves http and h3 frontends.
func TestParseBackendProtocols(t *testing.T) {
	for _, p := range []string{"h3", "h2", "h2c", "http1", "http1-tls"} {
		cfg := strings.Replace(goodConfig, "  - name: origins\n", "  - name: origins\n    protocol: "+p+"\n", 1)
		c, err := Parse([]byte(cfg))
		if err != nil {
			t.Fatalf("protocol %s: %v", p, err)
		}
		if got := c.Backends[0].Protocol; got != p {
			t.Fatalf("protocol %s parsed as %q", p, got)
		}
		// origins sets max_idle 2; the tunnel backend takes the default.
		cfg = strings.Replace(cfg, "max_idle: 2, ", "", 1)
		if c, err = Parse([]byte(cfg)); err != nil {
			t.Fatal(err)
		}
		want := 4
		if p == "http1" || p == "http1-tls" {
			want = 64
		}
		if got := c.Backends[0].Reuse.MaxIdle; got != want {
			t.Errorf("protocol %s: default max_idle %d, want %d", p, got, want)
		}
	}
}

func TestParseConfigGood(t *testing.T) {
	c, err := Parse([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Backends[0]
	if b.Servers[1].Name != "198.18.2.11:4433" || *b.Servers[1].Weight != 1 {
		t.Errorf("server defaults: %+v", b.Servers[1])
	}
	if *b.Retries != 2 || !*b.Redisp || b.Timeouts.Connect.D() != 2*time.Second {
		t.Errorf("backend defaults: retries %d redispatch %v connect %v", *b.Retries, *b.Redisp, b.Timeouts.Connect.D())
	}
	if c.Backends[1].Timeouts.Connect.D() != 500*time.Millisecond {
		t.Errorf("connect timeout %v", c.Backends[1].Timeouts.Connect.D())
	}
	if c.Interfaces[0].XDPMode != "auto" || c.Interfaces[0].NTuple != "auto" || c.Buffers.Frames != 8192 {
		t.Errorf("defaults: %+v %+v", c.Interfaces[0], c.Buffers)
	}
	if got := c.Frontends[0].Addr().String(); got != "198.18.1.1:80" {
		t.Errorf("frontend addr %s", got)
	}
	if f := c.Frontends[0]; f.Timeouts.Body.D() != 30*time.Second || f.Timeouts.Send.D() != 60*time.Second || f.MaxConnections != 0 || c.MaxConnections != 100000 || c.AdminPublic {
		t.Errorf("limit defaults: body %v, frontend max_connections %d, engine max_connections %d, admin_public %v",
			f.Timeouts.Body.D(), f.MaxConnections, c.MaxConnections, c.AdminPublic)
	}
}

// weight: 0 is kept (the server is drained); an unset weight is 1.
func TestParseConfigWeightZeroDrains(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(goodConfig, "weight: 3", "weight: 0", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if w0, w1 := *c.Backends[0].Servers[0].Weight, *c.Backends[0].Servers[1].Weight; w0 != 0 || w1 != 1 {
		t.Errorf("weights %d, %d; want 0 (explicit) and 1 (default)", w0, w1)
	}
}

// A non-loopback admin address needs admin_public: true.
func TestParseConfigAdminPublic(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9900", "192.0.2.1:9900", "[::]:9900"} {
		text := strings.Replace(goodConfig, "admin: 127.0.0.1:9900", "admin: \""+addr+"\"", 1)
		_, err := Parse([]byte(text))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "admin: ") || !strings.Contains(err.Error(), "admin_public: true") {
			t.Errorf("admin %s without admin_public: error %v, want one naming admin and admin_public", addr, err)
		}
		if _, err := Parse([]byte(text + "admin_public: true\n")); err != nil {
			t.Errorf("admin %s with admin_public: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:9900", "[::1]:9900", "127.0.0.2:0", "off"} {
		if _, err := Parse([]byte(strings.Replace(goodConfig, "admin: 127.0.0.1:9900", "admin: \""+addr+"\"", 1))); err != nil {
			t.Errorf("admin %s: %v", addr, err)
		}
	}
}

func TestParseConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name, edit, want string
	}{
		{"unknown field", "dataplane: xdp\nbogus: 1\n", "field bogus not found"},
		{"bad duration", strings.Replace(goodConfig, "connect: 500ms", "connect: fast", 1), `"fast" is not a duration`},
		{"bad balance", strings.Replace(goodConfig, "balance: leastconn", "balance: random", 1), "backends[1].balance: \"random\" is not one of"},
		{"bad address", strings.Replace(goodConfig, "198.18.2.10:4433\", weight", "198.18.2.10\", weight", 1), "backends[0].servers[0].address"},
		{"unknown backend", strings.Replace(goodConfig, "backend: tunnel", "backend: nope", 1), `frontends[2].backend: no backend named "nope"`},
		{"tcp needs raw", strings.Replace(goodConfig, "backend: tunnel", "backend: origins", 1), "frontends[2].backend: a tcp frontend needs a backend with protocol raw"},
		{"http needs an HTTP backend", strings.Replace(goodConfig, "protocol: http, backend: origins", "protocol: http, backend: tunnel", 1), "frontends[0].backend: an http frontend needs an HTTP backend (h3, h2, h2c, http1, http1-tls)"},
		{"backend protocol", strings.Replace(goodConfig, "protocol: raw", "protocol: h2d", 1), `backends[1].protocol: "h2d" is not one of`},
		{"listen not owned", strings.Replace(goodConfig, "198.18.1.1:80", "198.18.9.1:80", 1), "frontends[0].listen: 198.18.9.1 is not one of the interfaces' addresses"},
		{"admin on data plane", strings.Replace(goodConfig, "admin: 127.0.0.1:9900", "admin: 198.18.1.1:9900", 1), "admin: 198.18.1.1 is a data-plane address"},
		{"duplicate queue", strings.Replace(goodConfig, "queues: [0, 1]", "queues: [0, 0]", 1), "interfaces[0].queues[1]: queue 0 listed twice"},
		{"frames", goodConfig + "buffers: {frames: 1000}\n", "buffers.frames: 1000 is not a positive power of two"},
		{"too few frames", goodConfig + "buffers: {frames: 1024}\n", "buffers.frames: 1024: nic: config: Frames 1024 too few"},
		{"gateway off subnet", strings.Replace(goodConfig, "198.18.2.254", "10.0.0.1", 1), "interfaces[1].gateway"},
		{"reuse policy", strings.Replace(goodConfig, "policy: aggressive", "policy: sometimes", 1), "backends[0].reuse.policy"},
		{"workers vs queues", goodConfig + "workers: 2\n", "workers: 2 workers but 3 dedicated queues"},
		{"busy poll", strings.Replace(goodConfig, "xdp_mode: native", "xdp_mode: native\n    busy_poll: 1s", 1), "interfaces[1].busy_poll: 1s is outside 0..10ms"},
		{"ntuple", strings.Replace(goodConfig, "xdp_mode: native", "xdp_mode: native\n    ntuple: yes", 1), `interfaces[1].ntuple: "yes" is not one of on, off, auto`},
		{"weight", strings.Replace(goodConfig, "weight: 3", "weight: 300", 1), "backends[0].servers[0].weight: 300 is outside 0..256"},
		{"negative weight", strings.Replace(goodConfig, "weight: 3", "weight: -1", 1), "backends[0].servers[0].weight: -1 is outside 0..256"},
		{"body timeout", strings.Replace(goodConfig, "backend: origins}", "backend: origins, timeouts: {body: -1s}}", 1), "frontends[0].timeouts.body: must not be negative"},
		{"send timeout", strings.Replace(goodConfig, "backend: origins}", "backend: origins, timeouts: {send: -1s}}", 1), "frontends[0].timeouts.send: must not be negative"},
		{"fractional weight", strings.Replace(goodConfig, "weight: 3", "weight: 0.5", 1), "backends[0].servers[0].weight: line 24: 0.5 is not a whole number"},
		{"fractional limit", goodConfig + "max_connections: 1.5\n", "max_connections: line 31: 1.5 is not a whole number"},
		{"duplicate frontend name", strings.Replace(goodConfig, "name: web3,", "name: web,", 1), `frontends[1].name: frontend "web" defined twice`},
		{"frontend max_connections", strings.Replace(goodConfig, "backend: origins}", "backend: origins, max_connections: -1}", 1), "frontends[0].max_connections: must not be negative"},
		{"engine max_connections", goodConfig + "max_connections: -5\n", "max_connections: -5 must be at least 1"},
		{"early data on raw", strings.Replace(goodConfig, "protocol: raw", "protocol: raw\n    early_data: true", 1), "backends[1].early_data: only for protocol h3"},
		{"empty", "", "empty file"},
		{"two documents", goodConfig + "---\nadmin: off\n", "more than one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.edit))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// Whole numbers written as floats still read as integers; access_log's
// sample is a fraction.
func TestParseConfigWholeFloats(t *testing.T) {
	c, err := Parse([]byte(goodConfig + "max_connections: 1e5\naccess_log: {path: stdout, sample: 0.5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxConnections != 100000 || *c.AccessLog.Sample != 0.5 {
		t.Errorf("max_connections %d, sample %v", c.MaxConnections, *c.AccessLog.Sample)
	}
}

func TestParseConfigReportsEveryProblem(t *testing.T) {
	bad := strings.NewReplacer("balance: hash", "balance: random", "weight: 3", "weight: -1", "protocol: tcp", "protocol: udp").Replace(goodConfig)
	_, err := Parse([]byte(bad))
	var ce Errors
	if !errors.As(err, &ce) || len(ce) < 3 {
		t.Fatalf("want at least 3 field errors, got %v", err)
	}
}

func TestLoadConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.yaml")
	if err := os.WriteFile(p, []byte(goodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestDefaultConfigsParse(t *testing.T) {
	for name, text := range map[string]string{"demo": Demo} {
		if _, err := Parse([]byte(text)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
