package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/xdpnet/xdpnet/engine/origin"
	"github.com/xdpnet/xdpnet/mux/quicmux"
)

func originCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("origin", stderr)
	listen := fs.String("listen", "127.0.0.1:4433", "UDP address of the QUIC listener (h3 and raw streams)")
	name := fs.String("name", "", "name reported in X-Origin (default: the listen address)")
	rawTarget := fs.String("raw-target", "", "TCP address raw streams are spliced to (default: echo)")
	certFile := fs.String("cert", "", "certificate (PEM); with -key. Default: a self-signed one")
	keyFile := fs.String("key", "", "private key (PEM)")
	writeCA := fs.String("write-cert", "", "with a self-signed certificate: write it (PEM) to this file, for the gateway's backends[].tls.ca")
	if err := parse(fs, args); err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return fmt.Errorf("%w: -listen: %v", errUsage, err)
	}
	if (*certFile == "") != (*keyFile == "") {
		return fmt.Errorf("%w: -cert and -key go together", errUsage)
	}
	var cert tls.Certificate
	if *certFile != "" {
		cert, err = quicmux.LoadKeyPair(*certFile, *keyFile)
		if err != nil {
			return err
		}
	} else {
		dir, err := os.MkdirTemp("", "xdpnet-origin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cf, kf, err := quicmux.WriteSelfSigned(dir, []string{ap.Addr().String()}, 24*time.Hour)
		if err != nil {
			return err
		}
		if cert, err = quicmux.LoadKeyPair(cf, kf); err != nil {
			return err
		}
		if *writeCA != "" {
			pem, err := os.ReadFile(cf)
			if err != nil {
				return err
			}
			if err := os.WriteFile(*writeCA, pem, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "self-signed certificate written to %s\n", filepath.Clean(*writeCA))
		}
	}
	if *name == "" {
		*name = ap.String()
	}
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	quietQUIC()
	s := &origin.Server{Name: *name, RawTarget: *rawTarget, Log: newLogger(stderr, "info", "text")}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(pc, cert) }()
	fmt.Fprintf(stdout, "origin %s serving h3 and %s on udp %s\n", *name, quicmux.ALPNRaw, pc.LocalAddr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Shutdown(sctx)
	st := s.Stats()
	fmt.Fprintf(stdout, "origin %s: %d connections, %d requests, %d raw streams\n", *name, st.Conns, st.Requests, st.Streams)
	return nil
}
