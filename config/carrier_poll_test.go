package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
)

// TestCarrierPollMs: carrier_poll_ms decodes (absent = default, 0 = off),
// survives a save, is range-checked, counts as an opening change (the
// port is reopened) and shows in the reload diff.
func TestCarrierPollMs(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		ms   int
		poll time.Duration
	}{
		{"absent", "", 0, 10 * time.Millisecond},
		{"off", "carrier_poll_ms = 0\n", config.CarrierPollOff, -1},
		{"set", "carrier_poll_ms = 25\n", 25, 25 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse("t.toml", []byte(lagg0+"[[lagg.port]]\nname = \"wm0\"\n"+tc.line))
			if err != nil {
				t.Fatal(err)
			}
			p := c.Laggs[0].Ports[0]
			if p.CarrierPollMs != tc.ms || p.CarrierPoll() != tc.poll {
				t.Fatalf("got CarrierPollMs %d (poll %v), want %d (%v)", p.CarrierPollMs, p.CarrierPoll(), tc.ms, tc.poll)
			}
			b, err := config.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(b), "carrier_poll_ms"); got != (tc.line != "") {
				t.Errorf("saved config mentions carrier_poll_ms: %v, want %v:\n%s", got, tc.line != "", b)
			}
			c2, err := config.Parse("again.toml", b)
			if err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			if got := c2.Laggs[0].Ports[0].CarrierPollMs; got != tc.ms {
				t.Errorf("after a save: CarrierPollMs %d, want %d", got, tc.ms)
			}
		})
	}
	for _, bad := range []string{"carrier_poll_ms = -1\n", "carrier_poll_ms = 10001\n", "carrier_poll_ms = \"fast\"\n"} {
		if _, err := config.Parse("t.toml", []byte(lagg0+"[[lagg.port]]\nname = \"wm0\"\n"+bad)); err == nil || !strings.Contains(err.Error(), "carrier_poll_ms") {
			t.Errorf("%q: got error %v, want one naming carrier_poll_ms", bad, err)
		}
	}
	// Built in Go: out of range values are refused by Validate.
	c := config.Default()
	l := config.NewLagg("lagg0")
	l.Ports = []config.Port{{Name: "wm0", Kind: "afpacket", CarrierPollMs: -7}}
	c.Laggs = []config.Lagg{l}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "carrier_poll_ms") {
		t.Errorf("CarrierPollMs -7: got %v, want an error naming carrier_poll_ms", err)
	}

	a := config.Port{Name: "wm0", Kind: "afpacket"}
	b := a
	b.CarrierPollMs = config.CarrierPollOff
	if a.SameOpening(b) {
		t.Error("default and off poll: SameOpening true, want false (the port is reopened)")
	}
	if c := (config.Port{Name: "wm0", Kind: "afpacket", CarrierPollMs: config.DefaultCarrierPollMs}); !a.SameOpening(c) {
		t.Error("0 and 10 (the default): SameOpening false, want true")
	}
	oldC, newC := config.Default(), config.Default()
	lo, ln := config.NewLagg("lagg0"), config.NewLagg("lagg0")
	lo.Ports, ln.Ports = []config.Port{a}, []config.Port{b}
	oldC.Laggs, newC.Laggs = []config.Lagg{lo}, []config.Lagg{ln}
	lines := strings.Join(config.Lines(config.Items(oldC, newC)), "\n")
	if !strings.Contains(lines, "carrier_poll_ms 10 -> 0 (off)") {
		t.Errorf("reload diff:\n%s\nwant carrier_poll_ms 10 -> 0 (off)", lines)
	}
}
