package main

import (
	goruntime "runtime"
	"strings"
	"testing"

	glog "gvisor.dev/gvisor/pkg/log"
)

// Every command answers -h (and --help) with its help on stdout, nothing
// on stderr, and exit 0.
func TestHelpOnStdout(t *testing.T) {
	for _, c := range allCommands() {
		for _, h := range []string{"-h", "--help"} {
			t.Run(c.name+" "+h, func(t *testing.T) {
				code, stdout, stderr := ulagg(c.name, h)
				if code != 0 || stderr != "" || !strings.Contains(stdout, "usage: ulagg "+c.name) {
					t.Errorf("got exit %d, stdout %q, stderr %q; want exit 0 and the usage on stdout only", code, stdout, stderr)
				}
			})
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, stdout, stderr := ulagg(args...)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "ulagg run") {
			t.Errorf("ulagg %v: got exit %d, stdout %q, stderr %q; want exit 0 and the commands on stdout", args, code, stdout, stderr)
		}
	}
	code, stdout, _ := ulagg("help", "capture")
	if code != 0 || !strings.Contains(stdout, "usage: ulagg capture") || !strings.Contains(stdout, "-w FILE") {
		t.Errorf("ulagg help capture: got exit %d, %q", code, stdout)
	}
}

// Usage errors go to stderr with exit 2, and point at -h.
func TestUsageErrorsOnStderr(t *testing.T) {
	for _, args := range [][]string{{}, {"run", "--no-such-flag"}, {"frobnicate"}, {"help", "frobnicate"}} {
		code, stdout, stderr := ulagg(args...)
		if code != 2 || stdout != "" || stderr == "" {
			t.Errorf("ulagg %v: got exit %d, stdout %q, stderr %q; want exit 2 and the error on stderr only", args, code, stdout, stderr)
		}
	}
	if _, _, stderr := ulagg("run", "--no-such-flag"); !strings.Contains(stderr, "Run 'ulagg run -h' for help.") {
		t.Errorf("got %q, want a pointer to ulagg run -h", stderr)
	}
}

// Flags are printed as they are written in the README and the manual:
// two dashes for a long flag, one for a letter.
func TestHelpFlagSpelling(t *testing.T) {
	_, stdout, _ := ulagg("run", "-h")
	for _, want := range []string{"  --dry-run", "  -c FILE", "  --log-format FORMAT", "(default 800ms)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("ulagg run -h: no %q in\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, " -dry-run") || strings.Contains(stdout, " -strict") {
		t.Errorf("ulagg run -h spells a long flag with one dash:\n%s", stdout)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-V"}} {
		code, stdout, stderr := ulagg(args...)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "ulagg ") || !strings.Contains(stdout, goruntime.Version()) {
			t.Errorf("ulagg %v: got exit %d, %q, %q; want exit 0 and ulagg VERSION ... %s", args, code, stdout, stderr, goruntime.Version())
		}
		if strings.Contains(stdout, " dev\n") {
			t.Errorf("ulagg %v: got %q, want the build's version, not dev", args, stdout)
		}
	}
	// A test binary has no VCS information: it says so.
	if _, stdout, _ := ulagg("version"); !strings.Contains(stdout, "no VCS information") && !strings.Contains(stdout, "(rev ") {
		t.Errorf("ulagg version: got %q, want a revision or the reason there is none", stdout)
	}
}

func TestLogFormat(t *testing.T) {
	// newLogger routes gVisor's log into the logger: put it back after.
	old := glog.Log()
	t.Cleanup(func() { glog.SetTarget(old.Emitter); glog.SetLevel(old.Level) })
	for _, f := range []string{"text", "json"} {
		if _, err := newLogger(&strings.Builder{}, "info", f); err != nil {
			t.Errorf("--log-format %s: %v", f, err)
		}
	}
	var b strings.Builder
	log, err := newLogger(&b, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "lagg", "lagg0")
	if got := b.String(); !strings.HasPrefix(got, "{") || !strings.Contains(got, `"msg":"hello"`) {
		t.Errorf("json log: got %q, want one JSON object", got)
	}
	if code, _, stderr := ulagg("run", "-c", "x.toml", "--log-format", "xml"); code != 2 || !strings.Contains(stderr, "want text or json") {
		t.Errorf("--log-format xml: got exit %d, %q; want 2 and a usage error", code, stderr)
	}
}
