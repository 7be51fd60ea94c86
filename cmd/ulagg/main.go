// Command ulagg is NetBSD's lagg(4) link aggregation as a userspace TCP/IP
// appliance on gVisor's netstack.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/ratelog"
	"github.com/ulagg/ulagg/stack/appliance"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks errors that are the caller's words, answered with exit 2.
var errUsage = errors.New("usage")

type command struct {
	name, args, help string
	run              func(args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands; other files add theirs in init.
var commands = []command{
	{"run", "-c FILE [--dry-run]", "run the appliance in the foreground", cmdRun},
	{"version", "", "print the version", cmdVersion},
}

func main() {
	os.Exit(mainArgs(os.Args[1:], os.Stdout, os.Stderr))
}

func mainArgs(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(stderr, "ulagg %s: %v\n", c.name, err)
				return 2
			default:
				fmt.Fprintf(stderr, "ulagg %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "ulagg: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "ulagg: lagg(4) link aggregation as a userspace TCP/IP appliance\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  ulagg %-10s %-28s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintf(w, "\nRun 'ulagg COMMAND -h' for a command's options.\n")
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ulagg "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fmt.Fprintf(stdout, "ulagg %s\n", version)
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: log level %q: want debug, info, warn or error", errUsage, level)
	}
	// Every line a peer or an outside tool can trigger is bounded: at most a
	// few per cause and 10 s, then one "similar lines suppressed" summary.
	return slog.New(ratelog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}), ratelog.Options{})), nil
}

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	file := fs.String("c", "", "configuration `FILE` (TOML)")
	dry := fs.Bool("dry-run", false, "check the configuration and exit")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: -c FILE is required", errUsage)
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return fmt.Errorf("configuration not valid:\n%s", indent(err.Error()))
	}
	if *dry {
		fmt.Fprintf(stdout, "%s: configuration is valid (%d laggs, %d services)\n", *file, len(cfg.Laggs), len(cfg.Services))
		return nil
	}
	a, err := appliance.New(cfg, appliance.Options{Logger: log})
	if err != nil {
		return err
	}
	rt, err := startRuntime(a, *file, log)
	if err != nil {
		a.Close()
		return err
	}
	log.Info("ulagg running", "version", version, "config", *file, "laggs", len(cfg.Laggs))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				rt.reload()
				continue
			}
			log.Info("stopping", "signal", sig.String())
		case <-rt.done():
			log.Info("stopping", "reason", "runtime ended")
		}
		rt.close()
		a.Close()
		log.Info("stopped")
		return nil
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
