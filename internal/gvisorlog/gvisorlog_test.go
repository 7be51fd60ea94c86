package gvisorlog_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	glog "gvisor.dev/gvisor/pkg/log"

	"github.com/ulagg/ulagg/internal/gvisorlog"
)

func TestMessage(t *testing.T) {
	for _, c := range []struct{ format, want string }{
		{"plain", "gvisor: plain"},
		{"failed for packet [nic=%d, source=%s]: %v", "gvisor: failed for packet [nic=…, source=…]: …"},
		{"%-8.3f%% done %#x", "gvisor: …% done …"},
	} {
		if got := gvisorlog.Message(c.format); got != c.want {
			t.Errorf("Message(%q): got %q, want %q", c.format, got, c.want)
		}
	}
}

// A gVisor warning comes out as one JSON record at WARN with ulagg's
// handler, with gVisor's file:line, and a flood of lines from one call
// site is rate-limited.
func TestInstallRoutesGVisorLogIntoSlog(t *testing.T) {
	var buf bytes.Buffer
	old := glog.Log()
	t.Cleanup(func() { glog.SetTarget(old.Emitter); glog.SetLevel(old.Level) })
	gvisorlog.Install(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))

	glog.Debugf("not shown at info %d", 1)
	for i := range 50 {
		glog.Warningf("handleListenSegment failed for source=%s: %v", fmt.Sprintf("10.0.0.%d", i), "boom")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) == 0 || len(lines) > 6 {
		t.Fatalf("got %d lines for 50 warnings from one call site, want at most 5 (rate-limited):\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %q: %v", lines[0], err)
	}
	want := map[string]string{
		"level":     "WARN",
		"msg":       "gvisor: handleListenSegment failed for source=…: …",
		"text":      "handleListenSegment failed for source=10.0.0.0: boom",
		"component": "gvisor",
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s: got %v, want %q", k, rec[k], v)
		}
	}
	if c, _ := rec["caller"].(string); !strings.HasPrefix(c, "gvisorlog_test.go:") {
		t.Errorf("caller: got %q, want gvisorlog_test.go:LINE (the line that logged)", c)
	}
	if strings.Contains(buf.String(), "not shown") {
		t.Errorf("a gVisor debug line came out at level info:\n%s", buf.String())
	}
}

func TestLevel(t *testing.T) {
	for _, c := range []struct {
		in   glog.Level
		want slog.Level
	}{{glog.Warning, slog.LevelWarn}, {glog.Info, slog.LevelInfo}, {glog.Debug, slog.LevelDebug}} {
		if got := gvisorlog.Level(c.in); got != c.want {
			t.Errorf("Level(%v): got %v, want %v", c.in, got, c.want)
		}
	}
}
