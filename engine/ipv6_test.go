package engine_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/engine/enginelab"
	"github.com/xdpnet/xdpnet/internal/lab"
)

// TestLabIPv6: the engine with only IPv6 frontends (http, https, h3 on
// 2001:2:0:1::1) and IPv6 backends (nginx over h2 at 2001:2:0:2::10,
// caddy over h3 at 2001:2:0:2::11, health-checked), on both data planes:
// curl over HTTP/1.1, h2c and HTTPS (h2) and quic-go's HTTP/3 client get
// each origin's page through each frontend, routed by path.
func TestLabIPv6(t *testing.T) {
	needTool(t, "nginx")
	needTool(t, "caddy")
	needTool(t, "curl")
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			nginxAddr := netip.MustParseAddrPort("[2001:2:0:2::10]:443")
			caddyAddr := netip.MustParseAddrPort("[2001:2:0:2::11]:443")
			files := newOriginFiles(t, nginxAddr.Addr().String(), caddyAddr.Addr().String())
			cert := writeLabCert(t, filepath.Join(t.TempDir(), "fe"), "2001:2:0:1::1")
			cfg := fmt.Sprintf(`dataplane: xdp
admin: 127.0.0.1:0
interfaces:
  - {name: veth-client, queues: [0], addresses: ["2001:2:0:1::1/64"]}
  - {name: veth-backend, queues: [0], addresses: ["2001:2:0:2::1/64"]}
frontends:
  - name: http
    listen: "[2001:2:0:1::1]:8080"
    protocol: http
    backend: nginx
    routes: [{path_prefix: /c/, backend: caddy}]
  - {name: https, listen: "[2001:2:0:1::1]:8443", protocol: https, backend: nginx, routes: [{path_prefix: /c/, backend: caddy}], tls: {cert: %[1]q, key: %[2]q}}
  - {name: h3, listen: "[2001:2:0:1::1]:8443", protocol: h3, backend: nginx, routes: [{path_prefix: /c/, backend: caddy}], tls: {cert: %[1]q, key: %[2]q}}
backends:
  - name: nginx
    protocol: h2
    tls: {ca: %[3]q}
    health_check: {interval: 500ms, timeout: 400ms, path: /healthz}
    servers: [{address: %[4]q}]
  - name: caddy
    protocol: h3
    tls: {ca: %[3]q}
    health_check: {interval: 500ms, timeout: 400ms, path: /healthz}
    servers: [{address: %[5]q}]
`, cert.cert, cert.key, files.cert, nginxAddr.String(), caddyAddr.String())
			// caddy serves the document root under /c/ too.
			states := []string{t.TempDir(), t.TempDir()}
			var started []*proc
			t.Cleanup(func() {
				for _, p := range started {
					p.kill()
				}
			})
			env := startLab(t, stack, enginelab.Options{Config: cfg, NoOrigins: true, BeforeEngine: func(l *lab.Lab) error {
				for i, o := range []struct {
					k    originKind
					addr netip.AddrPort
				}{{nginxH2, nginxAddr}, {caddyOrigin(map[string]any{
					"match":  []any{map[string]any{"path": []string{"/c/*"}}},
					"handle": []any{map[string]any{"handler": "rewrite", "strip_path_prefix": "/c"}},
				}), caddyAddr}} {
					p, err := launchOrigin(o.k, l.Backend, o.addr, files, states[i])
					if err != nil {
						return err
					}
					started = append(started, p)
					if _, err := originReady(o.k, l.Backend, o.addr, p, 10*time.Second); err != nil {
						return err
					}
				}
				return nil
			}})
			h3c, closeH3, err := env.HTTP3Client()
			if err != nil {
				t.Fatal(err)
			}
			defer closeH3()
			if _, ok := waitServing(env, "http://[2001:2:0:1::1]:8080/index.html", time.Now(), recoverWithin); !ok {
				t.Fatal("the engine did not serve over IPv6")
			}
			for _, path := range []string{"/index.html", "/c/index.html"} {
				for _, args := range [][]string{
					{"http://[2001:2:0:1::1]:8080" + path},
					{"--http2-prior-knowledge", "http://[2001:2:0:1::1]:8080" + path},
					{"-k", "--http2", "https://[2001:2:0:1::1]:8443" + path},
				} {
					out, err := runIn(t, env.StartClient, 30*time.Second, "curl", append([]string{"-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"}, args...)...)
					if want := fmt.Sprintf("200 %d", originPage); err != nil || out != want {
						t.Errorf("curl %s: %q, %v; want %q", strings.Join(args, " "), out, err, want)
					}
				}
				code, body := exchange(t, h3c, http.MethodGet, "https://[2001:2:0:1::1]:8443"+path, nil)
				if code != http.StatusOK || len(body) != originPage {
					t.Errorf("HTTP/3 %s: status %d, %d bytes", path, code, len(body))
				}
			}
			st := env.Engine.Stats().Engine
			for _, b := range []string{"nginx", "caddy"} {
				for name, s := range st.Backends[b].Servers {
					if s.Requests == 0 {
						t.Errorf("backend %s server %s served nothing", b, name)
					}
				}
			}
		})
	}
}
