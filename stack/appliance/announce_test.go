package appliance_test

import (
	"strings"
	"testing"
	"time"
)

// TestAnnounceSettings: the lagg starts with the default repetition, and a
// reload's announce_count and announce_interval_ms reach the running lagg.
func TestAnnounceSettings(t *testing.T) {
	b := newBench(t, settingsTOML, "sp0", "sp1")
	l := b.a.Lagg("lagg0")
	if c := l.Config(); c.AnnounceCount != 2 || c.AnnounceInterval != 100*time.Millisecond {
		t.Errorf("at start: count %d interval %v, want 2 and 100ms", c.AnnounceCount, c.AnnounceInterval)
	}
	next := strings.Replace(settingsTOML, `proto = "failover"`, "proto = \"failover\"\nannounce_count = 4\nannounce_interval_ms = 250", 1)
	if err := b.a.ReloadConfig(parse(t, next)); err != nil {
		t.Fatal(err)
	}
	if c := l.Config(); c.AnnounceCount != 4 || c.AnnounceInterval != 250*time.Millisecond {
		t.Errorf("after the reload: count %d interval %v, want 4 and 250ms", c.AnnounceCount, c.AnnounceInterval)
	}
}
