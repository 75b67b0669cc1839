package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/xdpnet/xdpnet/engine/config"
)

// errUsage marks errors that exit with status 2.
var errUsage = errors.New("usage")

type command struct {
	name, synopsis string
	run            func(args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"run", "run the gateway on a configuration file (-c FILE)", runCmd},
	{"demo", "build a veth lab and run the engine under a bounded load (needs root)", demoCmd},
	{"stats", "print a running gateway's counters from its admin endpoint", statsCmd},
	{"origin", "serve HTTP/3 and raw streams as a lab origin", originCmd},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage), errors.Is(err, config.ErrInvalid):
			fmt.Fprintf(stderr, "xdpnet %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "xdpnet %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "xdpnet: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: xdpnet <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.synopsis)
	}
	fmt.Fprintln(w, "\nRun xdpnet <command> -h for its flags.")
}

// newFlags returns a flag set whose parse errors are usage errors.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("xdpnet "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %s", errUsage, strings.Join(fs.Args(), " "))
	}
	return nil
}

// newLogger builds the slog logger a configuration asks for.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
