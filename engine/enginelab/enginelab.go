package enginelab

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/xdpnet/xdpnet/engine/netapi"

	"github.com/xdpnet/xdpnet/engine/config"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/engine"
	"github.com/xdpnet/xdpnet/engine/origin"
	"github.com/xdpnet/xdpnet/internal/lab"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

// Options shape an Env.
type Options struct {
	// Stack is "xdp" (default) or "kernel".
	Stack string
	// Config is the engine configuration (YAML); empty means
	// config.Demo. Its servers must be lab server addresses.
	Config string
	// Admin overrides the configuration's admin address ("127.0.0.1:0" in
	// tests so that labs can run side by side).
	Admin string
	// Queues per veth (default 1): on xdp, one worker per queue per veth.
	Queues int
	// Clients is the number of client addresses (198.18.1.2, .3, ...;
	// default 1).
	Clients int
	// NoOrigins starts no origin: the caller runs its own servers on the
	// configured addresses in the backend namespace (third-party origins
	// such as gtlsserver or caddy), before or after the engine, and names
	// their CA in the backends' tls.ca (or sets tls.insecure_skip_verify).
	NoOrigins bool
	// BeforeEngine, when set, runs once the lab (and the origins) are up
	// and before the engine starts, e.g. to start third-party origins
	// with NoOrigins; an error aborts Start.
	BeforeEngine func(*lab.Lab) error
	// RawTarget is the TCP address (in the backend namespace) every
	// origin splices raw streams to, e.g. an iperf3 server; empty echoes.
	RawTarget string
	// BusyPoll sets every interface's busy_poll (xdp only).
	BusyPoll time.Duration
	// WrapNet, when set, wraps the network stack the engine is given
	// (the Env's Net stays the stack itself), e.g. to hide an optional
	// capability of the stack in a benchmark of what it buys.
	WrapNet func(netapi.Net) netapi.Net
	// Log receives the engine's logs; nil discards them.
	Log *slog.Logger
}

// Env is a running lab with origins and an engine.
type Env struct {
	Lab     *lab.Lab
	Config  *config.Config
	Net     netapi.Net
	Engine  *engine.Engine
	Origins []*origin.Server
	// OriginAddrs are the origins' QUIC addresses, in server order.
	OriginAddrs []netip.AddrPort

	certDir   string // the h3 frontends' lab certificates
	cert      tls.Certificate
	resetKey  quic.StatelessResetKey
	newOrigin func(i int) *origin.Server
	closeOnce sync.Once
	closeErr  error
}

// Start builds the lab, starts one origin per configured server address
// (unless Options.NoOrigins) and starts the engine. On error everything is torn down.
func Start(opts Options) (_ *Env, err error) {
	if opts.Stack == "" {
		opts.Stack = "xdp"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	text := opts.Config
	if text == "" {
		text = config.Demo
	}
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		return nil, err
	}
	cfg.Dataplane = opts.Stack
	if opts.Admin != "" {
		cfg.Admin = opts.Admin
	}
	for i := range cfg.Interfaces {
		if opts.BusyPoll > 0 {
			cfg.Interfaces[i].BusyPoll = config.Duration(opts.BusyPoll)
		}
	}
	if opts.Queues > 1 {
		for i := range cfg.Interfaces {
			cfg.Interfaces[i].Queues = nil
			for q := range opts.Queues {
				cfg.Interfaces[i].Queues = append(cfg.Interfaces[i].Queues, q)
			}
		}
	}
	// h3 frontends without a certificate get a lab one (the engine would
	// make its own, with a warning).
	var certDir string
	for i := range cfg.Frontends {
		f := &cfg.Frontends[i]
		if f.Protocol != config.ProtoH3 || f.TLS != nil {
			continue
		}
		if certDir == "" {
			if certDir, err = os.MkdirTemp("", "xdpnet-lab-"); err != nil {
				return nil, err
			}
		}
		host, _, _ := net.SplitHostPort(f.Listen)
		d := filepath.Join(certDir, f.Name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		cf, kf, err := quicmux.WriteSelfSigned(d, []string{host}, 24*time.Hour)
		if err != nil {
			return nil, err
		}
		f.TLS = &config.ServerTLS{Cert: cf, Key: kf}
	}
	if err := cfg.Validate(); err != nil {
		if certDir != "" {
			os.RemoveAll(certDir)
		}
		return nil, err
	}
	// One lab server address per distinct origin address.
	var addrs []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for _, b := range cfg.Backends {
		for _, s := range b.Servers {
			ap := netip.MustParseAddrPort(s.Address)
			if !seen[ap] {
				seen[ap] = true
				addrs = append(addrs, ap)
			}
		}
	}
	l, err := lab.New(lab.Options{Queues: max(1, opts.Queues), Servers: len(addrs), Clients: opts.Clients})
	if err != nil {
		if certDir != "" {
			os.RemoveAll(certDir)
		}
		return nil, fmt.Errorf("lab: %w", err)
	}
	env := &Env{Lab: l, Config: cfg, OriginAddrs: addrs, certDir: certDir}
	defer func() {
		if err != nil {
			env.Close()
		}
	}()
	labServers := map[netip.Addr]bool{}
	for _, a := range l.BackendLink.PeerAddrs {
		labServers[a] = true
	}
	var hosts []string
	for _, ap := range addrs {
		if !labServers[ap.Addr()] {
			return nil, fmt.Errorf("server %s is not a lab server address (%v)", ap, l.BackendLink.PeerAddrs)
		}
		hosts = append(hosts, ap.Addr().String())
	}
	cert, roots, err := quicmux.SelfSigned(hosts, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	env.cert = cert
	// Origins answer packets of connections they do not know with a
	// stateless reset, so that one restarted by RestartOrigin tells the
	// engine's pooled connections at once that they are gone.
	if _, err := rand.Read(env.resetKey[:]); err != nil {
		return nil, err
	}
	env.newOrigin = func(i int) *origin.Server {
		return &origin.Server{Name: fmt.Sprintf("origin-%c", 'a'+i), Log: opts.Log, RawTarget: opts.RawTarget,
			StatelessResetKey: &env.resetKey,
			DialTarget: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = l.Backend.Do(func() error {
					var d net.Dialer
					c, err = d.DialContext(ctx, network, addr)
					return err
				})
				return c, err
			}}
	}
	for i := range addrs {
		if opts.NoOrigins {
			break // the caller's origins take these addresses
		}
		o, err := env.startOrigin(i)
		if err != nil {
			return nil, err
		}
		env.Origins = append(env.Origins, o)
	}

	if opts.BeforeEngine != nil {
		if err := opts.BeforeEngine(l); err != nil {
			return nil, err
		}
	}

	switch opts.Stack {
	case "kernel":
		if err := kernelAddrs(l); err != nil {
			return nil, err
		}
		env.Net = &netapi.Kernel{N: 2 * max(1, opts.Queues), Do: l.Engine.Do}
	default:
		x, err := dataplane.New(cfg.DataPlane(), dataplane.Options{Do: l.Engine.Do, Log: opts.Log})
		if err != nil {
			return nil, err
		}
		env.Net = x
	}
	n := env.Net
	if opts.WrapNet != nil {
		n = opts.WrapNet(n)
	}
	e, err := engine.New(cfg, engine.Options{Net: n, Log: opts.Log, BackendRootCAs: roots})
	if err != nil {
		return nil, err
	}
	if err := e.Start(); err != nil {
		return nil, err
	}
	env.Engine = e
	return env, nil
}

// startOrigin starts origin i on its address in the backend namespace.
func (e *Env) startOrigin(i int) (*origin.Server, error) {
	ap := e.OriginAddrs[i]
	var pc net.PacketConn
	if err := e.Lab.Backend.Do(func() (err error) {
		pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		return err
	}); err != nil {
		return nil, fmt.Errorf("origin %s: %w", ap, err)
	}
	o := e.newOrigin(i)
	go o.Serve(pc, e.cert)
	return o, nil
}

// RestartOrigin kills origin i as a crash would (its peers get no
// CONNECTION_CLOSE) and starts a new one on the same address, which
// answers the old connections' packets with stateless resets. Not safe
// for concurrent use with itself or Close.
func (e *Env) RestartOrigin(i int) error {
	e.StopOrigin(i)
	return e.StartOrigin(i)
}

// StopOrigin kills origin i as a crash would and leaves its address closed:
// the engine's packets to it get ICMP port unreachable. StartOrigin brings
// it back. Not safe for concurrent use with RestartOrigin or Close.
func (e *Env) StopOrigin(i int) { e.Origins[i].Kill() }

// StartOrigin starts a new origin i on its address after StopOrigin.
func (e *Env) StartOrigin(i int) error {
	o, err := e.startOrigin(i)
	if err != nil {
		return err
	}
	e.Origins[i] = o
	return nil
}

// kernelAddrs gives the engine namespace's kernel the engine's .1 and ::1
// addresses, for the kernel-stack baseline.
func kernelAddrs(l *lab.Lab) error {
	return l.Engine.Do(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		for _, link := range []lab.Link{l.ClientLink, l.BackendLink} {
			nl, err := h.LinkByIndex(link.Index)
			if err != nil {
				return err
			}
			for _, a := range []netip.Addr{link.EngineV4, link.EngineV6} {
				bits := link.Net4.Bits()
				if a.Is6() {
					bits = link.Net6.Bits()
				}
				ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
				if err := h.AddrAdd(nl, &netlink.Addr{IPNet: ipn, Flags: unix.IFA_F_NODAD}); err != nil {
					return fmt.Errorf("kernel address %s on %s: %w", a, link.Name, err)
				}
			}
		}
		return nil
	})
}

// Dial opens a connection from the client namespace (from the first client
// address the kernel picks).
func (e *Env) Dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = e.Lab.Client.Do(func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenPacket opens a UDP socket in the client namespace.
func (e *Env) ListenPacket() (pc net.PacketConn, err error) {
	err = e.Lab.Client.Do(func() error {
		pc, err = net.ListenUDP("udp", nil)
		return err
	})
	return pc, err
}

// HTTPClient returns a net/http client whose connections start in the
// client namespace. conns bounds its keep-alive connections.
func (e *Env) HTTPClient(conns int, h2c bool) *http.Client {
	tr := &http.Transport{
		DialContext:         e.Dial,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
	}
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// HTTP3Client returns a quic-go HTTP/3 client whose UDP socket lives in the
// client namespace, and a function that closes it. It skips certificate
// verification: the engine's h3 frontend presents a self-signed lab
// certificate.
func (e *Env) HTTP3Client() (*http.Client, func(), error) {
	pc, err := e.ListenPacket()
	if err != nil {
		return nil, nil, err
	}
	tr := &quic.Transport{Conn: pc}
	h3 := &http3.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, err
			}
			return tr.Dial(ctx, ua, tlsCfg, cfg)
		},
	}
	return &http.Client{Transport: h3, Timeout: 10 * time.Second}, func() {
		h3.Close()
		tr.Close()
		pc.Close()
	}, nil
}

// FrontendURL is the base URL of the named frontend ("http://198.18.1.1:8080",
// https for https and h3 frontends).
func (e *Env) FrontendURL(name string) string {
	for _, f := range e.Config.Frontends {
		if f.Name == name {
			scheme := "http"
			if f.Protocol == config.ProtoH3 || f.Protocol == config.ProtoHTTPS {
				scheme = "https"
			}
			return scheme + "://" + f.Listen
		}
	}
	return ""
}

// StartClient starts cmd in the client namespace (curl, h2load, iperf3).
func (e *Env) StartClient(cmd *exec.Cmd) error { return e.Lab.Client.Start(cmd) }

// StartBackend starts cmd in the backend namespace (e.g. iperf3 -s).
func (e *Env) StartBackend(cmd *exec.Cmd) error { return e.Lab.Backend.Start(cmd) }

// Close stops the engine, the origins and the network stack, and removes
// the lab. It is idempotent.
func (e *Env) Close() error {
	e.closeOnce.Do(func() {
		var errs []error
		if e.Engine != nil {
			errs = append(errs, e.Engine.Close())
		}
		for _, o := range e.Origins {
			o.Close()
		}
		if e.Net != nil {
			errs = append(errs, e.Net.Close())
		}
		if e.Lab != nil {
			errs = append(errs, e.Lab.Close())
		}
		if e.certDir != "" {
			errs = append(errs, os.RemoveAll(e.certDir))
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}
