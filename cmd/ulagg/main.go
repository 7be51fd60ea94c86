// Command ulagg is NetBSD's lagg(4) link aggregation as a userspace TCP/IP
// appliance on gVisor's netstack.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/gvisorlog"
	"github.com/ulagg/ulagg/internal/ratelog"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/stack/appliance"
)

// errUsage marks errors that are the caller's words, answered with exit 2.
var errUsage = errors.New("usage")

type command struct {
	name, args, help string
	run              func(args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands; other files add theirs in init.
var commands = []command{
	{"run", "-c FILE [--dry-run] [--strict] [--stop-timeout D] [--log-format text|json]", "run the appliance in the foreground", cmdRun},
	{"version", "", "print the version, VCS revision and Go version", cmdVersion},
}

func main() {
	os.Exit(mainArgs(os.Args[1:], os.Stdout, os.Stderr))
}

func mainArgs(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 { // help.go: help on stdout exits 0, a usage error on stderr 2
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help":
		usage(stdout)
		return 0
	case "--version", "-version", "-V":
		args = []string{"version"}
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, &cliStderr{Writer: stderr, stdout: stdout})
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(stderr, "ulagg %s: %v\nRun 'ulagg %s -h' for help.\n", c.name, err, c.name)
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

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	return newFlagSet(name, stderr) // help.go
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

// parseInterleaved parses args with fs, flags before, between or after
// the positional words, and returns those words in order.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// onInterrupt calls stop once on Ctrl-C or SIGTERM, until the returned
// cancel is called: streaming commands half-close their stream then, so
// the appliance ends it cleanly.
func onInterrupt(stop func()) (cancel func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	quit := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			stop()
		case <-quit:
		}
	}()
	return func() {
		close(quit)
		signal.Stop(sigs)
	}
}

// newLogger makes the log handler (format text or json) and routes gVisor's
// own log lines into it (internal/gvisorlog).
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: log level %q: want debug, info, warn or error", errUsage, level)
	}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})
	case "json":
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})
	default:
		return nil, fmt.Errorf("%w: log format %q: want text or json", errUsage, format)
	}
	gvisorlog.Install(h) // rate-limited on its own
	// Every line a peer or an outside tool can trigger is bounded: at most a
	// few per cause and 10 s, then one "similar lines suppressed" summary.
	return slog.New(ratelog.New(h, ratelog.Options{})), nil
}

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	file := fs.String("c", "", "configuration `FILE` (TOML)")
	dry := fs.Bool("dry-run", false, "check the configuration and exit")
	strict := fs.Bool("strict", false, "refuse to start (and to reload) if a configured port's interface is missing, instead of running without it until it appears")
	level := fs.String("log-level", "info", "log `LEVEL`: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log `FORMAT`: text (logfmt) or json, one object a line")
	stopTimeout := fs.Duration("stop-timeout", defaultStopTimeout,
		"after SIGTERM or SIGINT, exit by then even if the clean stop has not finished (the next start puts the host interfaces back)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: -c FILE is required", errUsage)
	}
	if *stopTimeout <= 0 {
		return fmt.Errorf("%w: --stop-timeout must be positive", errUsage)
	}
	log, err := newLogger(stderr, *level, *logFormat)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return fmt.Errorf("configuration not valid:\n%s", indent(err.Error()))
	}
	if *dry {
		fmt.Fprintf(stdout, "%s: configuration is valid (%d laggs, %d VLANs, %d routes, %d services)\n", *file, len(cfg.Laggs), len(cfg.VLANs), len(cfg.Routes), len(cfg.Services))
		return nil
	}
	// SIGHUP is caught from here on: its default action would kill a
	// process still starting; one that comes now is served once running.
	// SIGTERM and SIGINT keep their default action (an immediate exit)
	// until the signal loop runs; the ports' state files make that safe.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// Before anything allocates: a flood from the wire must not grow the
	// process without bound (see appliance.ApplyMemoryLimit).
	if limit, from := appliance.ApplyMemoryLimit(cfg.Limits); limit == math.MaxInt64 {
		log.Info("no memory limit", "from", from)
	} else {
		log.Info("memory limit", "mib", limit>>20, "from", from)
	}
	a, err := appliance.New(cfg, appliance.Options{Logger: log, OpenPort: hostPortOpener(cfg.Control.RuntimeDirOrDefault()), Strict: *strict})
	if err != nil {
		return err
	}
	rt, err := startRuntime(a, *file, log)
	if err != nil {
		a.Close()
		return err
	}
	// What a burst of traffic took is given back once idle again (issue #12).
	trim := appliance.StartMemoryTrimmer(appliance.MemoryTrimOptions{Logger: log})
	defer trim.Close()
	log.Info("ulagg running", "version", version, "config", *file, "laggs", len(cfg.Laggs))
	sdStop := startSystemd(rt, a, log) // READY=1 now that every lagg is applied (sdnotify.go)

	// The signal loop never does the work itself: SIGHUP only requests a
	// reload (the runtime's reload goroutine runs it) and SIGTERM starts
	// the stop, so both are always seen, whatever is in progress.
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	for stopping := false; !stopping; {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Info("reload requested", "signal", sig.String())
				rt.requestReload()
				continue
			}
			log.Info("stopping", "signal", sig.String())
		case <-rt.done():
			log.Info("stopping", "reason", "runtime ended")
		}
		stopping = true
	}
	sdStop()
	return stop(rt, a, sigs, *stopTimeout, log)
}

// defaultStopTimeout keeps the exit after SIGTERM within a second.
const defaultStopTimeout = 800 * time.Millisecond

// stop closes the runtime and the appliance (the ports put their host
// interfaces back) and waits for that at most timeout, or until a second
// SIGTERM or SIGINT. Past that it returns without waiting, and the process
// exits: the state files left under the runtime directory let the next
// start put the interfaces back.
func stop(rt *runtime, a *appliance.Appliance, sigs <-chan os.Signal, timeout time.Duration, log *slog.Logger) error {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		rt.close()
		a.Close()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-done:
			log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
			return nil
		case <-t.C:
			log.Error("stopped without finishing: the clean stop took longer than --stop-timeout; the next start puts the host interfaces back", "timeout", timeout)
			return fmt.Errorf("the clean stop did not finish within %v", timeout)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				continue
			}
			log.Error("stopped without finishing: a second signal; the next start puts the host interfaces back", "signal", sig.String())
			return fmt.Errorf("stopped by a second %s", sig)
		}
	}
}

// hostPortOpener opens the configured ports with their state files (what
// to put back on the host interfaces after a crash) under runDir.
func hostPortOpener(runDir string) appliance.PortOpener {
	return func(p config.Port, log *slog.Logger) (linkep.Port, error) {
		o := appliance.PortOpenOptions(p, log) // speed, gso
		o.RuntimeDir = runDir
		return linkep.Open(p.Kind, p.Name, o)
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
