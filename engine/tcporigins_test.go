package engine_test

// Third-party origins over TCP (issue 22): nginx, h2o and HAProxy, each
// serving one backend protocol (h2, h2c, http1, http1-tls) at its address,
// from the lab files of newOriginFiles. Each runs as one process, so that a
// SIGKILL takes the whole origin down as a crash would.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/xdpnet/xdpnet/internal/lab"
)

var (
	// nginx serves the document root, and PUT under /up/ (its DAV
	// module) into its state directory, so that an upload can be read
	// back; files under /trailer/ end with a trailer X-Trailer-Of naming
	// the path (nginx's add_trailer; chunked on HTTP/1.1); /big answers
	// the X-Big request header as X-Big-Echo. Request headers may take 64
	// KiB.
	nginxH2       = originKind{name: "nginx", command: nginxCommand("h2", 0), proto: "h2"}
	nginxHTTP1    = originKind{name: "nginx", command: nginxCommand("http1", 0), proto: "http1"}
	nginxHTTP1TLS = originKind{name: "nginx", command: nginxCommand("http1-tls", 0), proto: "http1-tls"}
	// h2o serves the document root, echoes request bodies (and the
	// X-Big request header) at /echo, and streams a body of unknown length
	// at /chunks (mruby).
	h2oH2C = originKind{name: "h2o", command: h2oCommand(false), proto: "h2c"}
	h2oH2  = originKind{name: "h2o", command: h2oCommand(true), proto: "h2"}
	// HAProxy answers itself (http-request return): /index.html from the
	// document root, the length of the X-Big request header as X-Big-Len
	// at /big (headers up to its 64 KiB buffer), "ok" for anything else,
	// without reading a request body.
	haproxyHTTP1 = originKind{name: "haproxy", command: haproxyCommand(false), proto: "http1"}
	haproxyH2    = originKind{name: "haproxy", command: haproxyCommand(true), proto: "h2"}
)

// withBackendProtocol sets the protocol of faultConfig's backend ("" keeps
// h3).
func withBackendProtocol(cfg, proto string) string {
	if proto == "" {
		return cfg
	}
	return strings.Replace(cfg, "\n    protocol: h3\n", "\n    protocol: "+proto+"\n", 1)
}

// tlsProto reports whether a backend protocol runs over TLS.
func tlsProto(proto string) bool { return proto == "h2" || proto == "http1-tls" }

// tcpGet sends one GET to addr over proto (h2, h2c, http1, http1-tls) on a
// fresh connection made in ns, and returns nil on a 200.
func tcpGet(ctx context.Context, ns *lab.NS, proto string, addr netip.AddrPort, path string) error {
	var p http.Protocols
	switch proto {
	case "h2":
		p.SetHTTP2(true)
	case "h2c":
		p.SetUnencryptedHTTP2(true)
	default:
		p.SetHTTP1(true)
	}
	tr := &http.Transport{
		Protocols:         &p,
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, a string) (c net.Conn, err error) {
			err = ns.Do(func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, a)
				return err
			})
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	scheme := "http"
	if tlsProto(proto) {
		scheme = "https"
	}
	return getOK(ctx, tr, scheme+"://"+addr.String()+path)
}

// nginxCommand runs nginx in the foreground without a master process,
// keepalive_requests at keepalive (0: nginx's default, 1000): after that
// many requests it ends an HTTP/1.1 connection with Connection: close and
// an HTTP/2 one with GOAWAY.
func nginxCommand(proto string, keepalive int) func(netip.AddrPort, originFiles, string) ([]string, []string, error) {
	if keepalive == 0 {
		keepalive = 1000 // here, not in the closure, which parallel tests share
	}
	return func(addr netip.AddrPort, f originFiles, state string) ([]string, []string, error) {
		listen := addr.String()
		switch proto {
		case "h2":
			listen += " ssl http2"
		case "http1-tls":
			listen += " ssl"
		}
		var temps strings.Builder
		for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
			fmt.Fprintf(&temps, "  %s_temp_path %s;\n", d, filepath.Join(state, d))
		}
		cfg := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
%[2]s  client_max_body_size 0;
  large_client_header_buffers 4 64k;
  keepalive_requests %[3]d;
  server {
    listen %[4]s;
    ssl_certificate %[5]s;
    ssl_certificate_key %[6]s;
    root %[7]s;
    location /trailer/ {
      add_trailer X-Trailer-Of $uri;
    }
    location = /big {
      add_header X-Big-Echo $http_x_big;
      return 200 "ok\n";
    }
    location /up/ {
      root %[1]s/dav;
      dav_methods PUT;
      create_full_put_path on;
    }
  }
}
`, state, temps.String(), keepalive, listen, f.cert, f.key, f.dir)
		file := filepath.Join(state, "nginx.conf")
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			return nil, nil, err
		}
		return nil, []string{"-e", filepath.Join(state, "error.log"), "-p", state, "-c", file}, nil
	}
}

// h2oCommand runs h2o (as root: the lab files are the test's) with TLS or
// cleartext on addr; cleartext HTTP/2 is prior knowledge (h2c).
func h2oCommand(withTLS bool) func(netip.AddrPort, originFiles, string) ([]string, []string, error) {
	return func(addr netip.AddrPort, f originFiles, state string) ([]string, []string, error) {
		ssl := ""
		if withTLS {
			ssl = fmt.Sprintf("\n  ssl: {certificate-file: %q, key-file: %q}", f.cert, f.key)
		}
		cfg := fmt.Sprintf(`user: root
pid-file: %[1]s/h2o.pid
error-log: %[1]s/error.log
listen:
  host: %[2]s
  port: %[3]d%[4]s
hosts:
  default:
    paths:
      /echo:
        mruby.handler: |
          Proc.new do |env|
            [200, {"x-big-echo" => env["HTTP_X_BIG"] || ""}, [env["rack.input"] ? env["rack.input"].read : ""]]
          end
      /chunks:
        mruby.handler: |
          class Chunks
            def each
              64.times { |i| yield "chunk #{i} " + ("x" * 1000) + "\n" }
            end
          end
          Proc.new do |env|
            [200, {}, Chunks.new]
          end
      /:
        file.dir: %[5]q
`, state, addr.Addr(), addr.Port(), ssl, f.dir)
		file := filepath.Join(state, "h2o.conf")
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			return nil, nil, err
		}
		return nil, []string{"-c", file}, nil
	}
}

// haproxyCommand runs HAProxy in the foreground (-db) as an origin that
// answers itself; over TLS it offers h2 only.
func haproxyCommand(withTLS bool) func(netip.AddrPort, originFiles, string) ([]string, []string, error) {
	return func(addr netip.AddrPort, f originFiles, state string) ([]string, []string, error) {
		bind := addr.String()
		if withTLS {
			cert, err := os.ReadFile(f.cert)
			if err != nil {
				return nil, nil, err
			}
			key, err := os.ReadFile(f.key)
			if err != nil {
				return nil, nil, err
			}
			pem := filepath.Join(state, "crt.pem")
			if err := os.WriteFile(pem, append(cert, key...), 0o600); err != nil {
				return nil, nil, err
			}
			bind += " ssl crt " + pem + " alpn h2"
		}
		cfg := fmt.Sprintf(`global
  maxconn 4000
  tune.bufsize 65536
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
frontend origin
  bind %s
  http-request return status 200 content-type text/html file %s if { path /index.html }
  http-request return status 200 content-type text/plain hdr x-big-len "%%[req.hdr(x-big),length]" string ok if { path /big }
  http-request return status 200 content-type text/plain string ok
`, bind, filepath.Join(f.dir, "index.html"))
		file := filepath.Join(state, "haproxy.cfg")
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			return nil, nil, err
		}
		return nil, []string{"-db", "-f", file}, nil
	}
}
