package config_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
)

// TestAnnounceDecode: the keys decode, survive Marshal, and left out mean
// two announcements 100 ms apart.
func TestAnnounceDecode(t *testing.T) {
	c, err := config.Parse("test.toml", []byte("[[lagg]]\nname = \"lagg0\"\nannounce_count = 5\nannounce_interval_ms = 250\n[lagg.failover]\nrx_all = false\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Laggs[0]
	if l.AnnounceCount != 5 || l.AnnounceInterval != 250*time.Millisecond {
		t.Fatalf("got count %d interval %v, want 5 and 250ms", l.AnnounceCount, l.AnnounceInterval)
	}
	b, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := config.Parse("again.toml", b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if l2 := c2.Laggs[0]; l2.AnnounceCount != 5 || l2.AnnounceInterval != 250*time.Millisecond || l2.Failover.RxAll {
		t.Errorf("after a round trip: got count %d interval %v rx_all %v, want 5, 250ms, false\n%s", l2.AnnounceCount, l2.AnnounceInterval, l2.Failover.RxAll, b)
	}

	d, err := config.Parse("default.toml", []byte("[[lagg]]\nname = \"lagg0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n, iv := d.Laggs[0].AnnounceSettings(); n != 2 || iv != 100*time.Millisecond {
		t.Errorf("defaults: got %d, %v, want 2, 100ms", n, iv)
	}
	if b, _ := config.Marshal(d); strings.Contains(string(b), "announce") {
		t.Errorf("defaults marshalled:\n%s", b)
	}
}

func TestAnnounceDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"announce_count = 256", "lagg[0].announce_count: 256 is out of range 1..255"},
		{"announce_count = -1", "announce_count: -1 is out of range"},
		{"announce_count = \"2\"", "announce_count"},
		{"announce_interval_ms = 60001", "lagg[0].announce_interval_ms: 60001 is out of range 1..60000"},
		{"announce_interval_ms = -5", "announce_interval_ms"},
		{"announce_intervall_ms = 5", "announce_intervall_ms"},
	} {
		_, err := config.Parse("bad.toml", []byte("[[lagg]]\nname = \"lagg0\"\n"+tc.body+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.body, err, tc.want)
		}
	}
	c := config.Default()
	l := config.NewLagg("lagg0")
	l.AnnounceInterval = 1500 * time.Microsecond
	c.Laggs = []config.Lagg{l}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "announce_interval_ms: 1.5ms is not a whole number of milliseconds") {
		t.Errorf("interval 1.5ms: got %v", err)
	}
}

// TestAnnounceDiff: a reload changing them is a lagg setting change (which
// the appliance applies in place); spelling out the defaults is none.
func TestAnnounceDiff(t *testing.T) {
	parse := func(extra string) *config.Config {
		t.Helper()
		c, err := config.Parse("t.toml", []byte("[[lagg]]\nname = \"lagg0\"\n"+extra))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := parse("")
	if items := config.Items(base, parse("announce_count = 2\nannounce_interval_ms = 100\n")); len(items) != 0 {
		t.Errorf("defaults spelt out: got %v, want no change", items)
	}
	var lines []string
	for _, it := range config.Items(base, parse("announce_count = 3\nannounce_interval_ms = 50\n")) {
		if it.Kind == config.ItemSetting {
			lines = append(lines, it.String())
		}
	}
	for _, want := range []string{"announce_count", "announce_interval_ms"} {
		if !slices.ContainsFunc(lines, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("diff: got %q, want a %s setting change", lines, want)
		}
	}
}
