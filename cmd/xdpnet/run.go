package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/xdpnet/xdpnet/engine/netapi"

	"github.com/xdpnet/xdpnet/engine/config"

	"github.com/xdpnet/xdpnet/dataplane"
	"github.com/xdpnet/xdpnet/engine"
)

func runCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	file := fs.String("c", "", "configuration file (YAML)")
	drain := fs.Duration("drain", 30*time.Second, "on SIGTERM, how long requests and tunnels in flight may take to finish")
	check := fs.Bool("check", false, "validate the configuration and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: -c FILE is required", errUsage)
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "%s: configuration ok\n", *file)
		return nil
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	quietQUIC()
	applyGC(cfg.GC)
	// Take the signals before anything starts, so that a SIGTERM during
	// start-up drains instead of killing the process mid-set-up.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	var nt netapi.Net
	switch cfg.Dataplane {
	case "kernel":
		nt = &netapi.Kernel{N: cfg.Workers}
	default:
		x, err := dataplane.New(cfg.DataPlane(), dataplane.Options{Log: log})
		if err != nil {
			return err
		}
		nt = x
	}
	defer nt.Close()
	e, err := engine.New(cfg, engine.Options{Net: nt, Log: log})
	if err != nil {
		return err
	}
	if err := e.Start(); err != nil {
		return err
	}
	if a := e.AdminAddr(); a != nil {
		log.Info("admin endpoint", "addr", a.String(), "paths", "/metrics /stats /healthz")
	}

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			// Log rotation first: it must not depend on the file
			// being a valid configuration.
			if err := e.ReopenAccessLog(); err != nil {
				log.Error("access log reopen", "err", err)
			}
			next, err := config.Load(*file)
			if err == nil {
				err = e.Reload(next)
			}
			if err == nil {
				applyGC(next.GC)
			}
			if err != nil {
				log.Error("reload refused; the running configuration stays", "err", err)
			}
			continue
		}
		log.Info("signal: draining", "signal", sig.String(), "deadline", *drain)
		ctx, cancel := context.WithTimeout(context.Background(), *drain)
		// A second SIGTERM or SIGINT (an operator's second Ctrl-C) cuts
		// the drain at once instead of waiting out -drain; SIGHUP is
		// ignored meanwhile.
		drained := make(chan struct{})
		var watch sync.WaitGroup
		watch.Go(func() {
			for {
				select {
				case s := <-sigs:
					if s != syscall.SIGHUP {
						log.Warn("second signal: cutting the drain", "signal", s.String())
						cancel()
						return
					}
				case <-drained:
					return
				}
			}
		})
		err := e.Shutdown(ctx)
		close(drained)
		watch.Wait()
		cancel()
		if err != nil {
			return err
		}
		log.Info("drained; exiting")
		return nil
	}
	return nil
}

// quietQUIC turns off quic-go's warning that a UDP socket's buffer cannot
// be resized: netstack sockets have no such knob, and the warning would
// print on every start.
func quietQUIC() { os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true") }
