package config_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
)

const monitorTOML = `
[[lagg]]
name = "lagg0"
proto = "failover"
[lagg.monitor]
arp_targets = ["10.0.0.1", "10.0.0.2"]
ns_targets = ["fd00::1"]
interval_ms = 100
missed_max = 3
validate = "active"
require = "all"
[[lagg.port]]
name = "veth0"
`

func TestLinkMonitorDecode(t *testing.T) {
	c, err := config.Parse("test.toml", []byte(monitorTOML))
	if err != nil {
		t.Fatal(err)
	}
	m := c.Laggs[0].Monitor
	want := config.Monitor{
		ARPTargets: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")},
		NSTargets:  []netip.Addr{netip.MustParseAddr("fd00::1")},
		Interval:   100 * time.Millisecond, MissedMax: 3, Validate: "active", Require: "all",
	}
	if !m.Equal(&want) || !slices.Equal(m.ARPTargets, want.ARPTargets) {
		t.Errorf("got %+v, want %+v", m, want)
	}
	if got := m.String(); got != "arp 10.0.0.1 arp 10.0.0.2 ns fd00::1 interval 100 missed 3 validate active require all" {
		t.Errorf("String: got %q", got)
	}
	// Marshal and parse again: the same monitor.
	b, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "[lagg.monitor]") {
		t.Fatalf("marshalled config has no [lagg.monitor]:\n%s", b)
	}
	c2, err := config.Parse("again.toml", b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if m2 := c2.Laggs[0].Monitor; !m2.Equal(&m) {
		t.Errorf("after a round trip: got %v, want %v", m2.String(), m.String())
	}
	// A reload that changes the monitor is a lagg setting change.
	c2.Laggs[0].Monitor.MissedMax = 5
	var lines []string
	for _, it := range config.Items(c, c2) {
		lines = append(lines, it.String())
	}
	if !slices.ContainsFunc(lines, func(s string) bool { return strings.Contains(s, "monitor") && strings.Contains(s, "missed 5") }) {
		t.Errorf("diff: got %q, want a monitor change to missed 5", lines)
	}
}

func TestLinkMonitorDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`arp_targets = ["fd00::1"]`, "lagg[0].monitor.arp_targets[0]: fd00::1 is not a unicast IPv4 address"},
		{`ns_targets = ["10.0.0.1"]`, "lagg[0].monitor.ns_targets[0]: 10.0.0.1 is not a unicast IPv6 address"},
		{`arp_targets = ["10.0.0.300"]`, `"10.0.0.300" is not an IP address`},
		{`arp_targets = ["224.0.0.1"]`, "not a unicast IPv4 address"},
		{`arp_targets = ["10.0.0.1", "10.0.0.1"]`, "already given by arp_targets[0]"},
		{"arp_targets = [\"10.0.0.1\"]\ninterval_ms = 5", "interval_ms"},
		{"arp_targets = [\"10.0.0.1\"]\ninterval_ms = 60001", "interval_ms"},
		{"arp_targets = [\"10.0.0.1\"]\nmissed_max = 256", "missed_max"},
		{"arp_targets = [\"10.0.0.1\"]\nvalidate = \"some\"", `"some" is not one of all, active, backup`},
		{"arp_targets = [\"10.0.0.1\"]\nrequire = \"most\"", `"most" is not one of any, all`},
		{`interval_ms = 100`, "no arp_targets or ns_targets"},
		{`arp_target = ["10.0.0.1"]`, "arp_target"},
	} {
		doc := "[[lagg]]\nname = \"lagg0\"\n[lagg.monitor]\n" + tc.body + "\n"
		_, err := config.Parse("bad.toml", []byte(doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.body, err, tc.want)
		}
	}
}

func TestLinkMonitorIfconfig(t *testing.T) {
	c, err := config.Parse("test.toml", []byte("[[lagg]]\nname = \"lagg0\"\nproto = \"failover\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	apply := func(line string) *config.Config {
		t.Helper()
		cmd, err := config.ParseIfconfig(strings.Fields(line))
		if err != nil {
			t.Fatalf("ParseIfconfig(%q): %v", line, err)
		}
		// Canonical words parse to the same command.
		again, err := config.ParseIfconfig(cmd.Args())
		if err != nil || again.String() != cmd.String() {
			t.Fatalf("%q: canonical %q parses to %v, %v", line, cmd.String(), again, err)
		}
		next, err := cmd.Apply(c, nil)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		return next
	}
	c = apply("lagg0 laggmonitor arp 10.0.0.1 10.0.0.2 interval 100 missed 3")
	if got := c.Laggs[0].Monitor.String(); got != "arp 10.0.0.1 arp 10.0.0.2 interval 100 missed 3 validate all require any" {
		t.Errorf("got %q", got)
	}
	c = apply("lagg0 laggmonitor ns fd00::1 -arp validate backup require all")
	if got := c.Laggs[0].Monitor.String(); got != "ns fd00::1 interval 100 missed 3 validate backup require all" {
		t.Errorf("got %q", got)
	}
	c = apply("lagg0 -laggmonitor")
	if m := c.Laggs[0].Monitor; m.Enabled() || m.Interval != 0 {
		t.Errorf("after -laggmonitor: got %+v, want off", m)
	}
	for _, tc := range []struct{ line, want string }{
		{"lagg0 laggmonitor", "laggmonitor: unknown option"},
		{"lagg0 laggmonitor arp", "laggmonitor arp: missing address"},
		{"lagg0 laggmonitor arp fd00::1", "fd00::1 is not an IPv4 address"},
		{"lagg0 laggmonitor ns 10.0.0.1", "10.0.0.1 is not an IPv6 address"},
		{"lagg0 laggmonitor arp 10.0.0.1 interval 5", "out of range 10..60000"},
		{"lagg0 laggmonitor arp 10.0.0.1 missed 0", "out of range 1..255"},
		{"lagg0 laggmonitor arp 10.0.0.1 validate most", `"most" is not one of all, active, backup`},
		{"lagg0 laggmonitor arp 10.0.0.1 require some", `"some" is not one of any, all`},
	} {
		if _, err := config.ParseIfconfig(strings.Fields(tc.line)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.line, err, tc.want)
		}
	}
	// Settings without a target do nothing: refused.
	if cmd, err := config.ParseIfconfig(strings.Fields("lagg0 laggmonitor interval 100")); err != nil {
		t.Fatal(err)
	} else if _, err := cmd.Apply(c, nil); err == nil || !strings.Contains(err.Error(), "no arp or ns target") {
		t.Errorf("laggmonitor interval 100 with no target: got %v, want refused", err)
	}
	// A multicast target is refused by validation of the result.
	cmd, err := config.ParseIfconfig(strings.Fields("lagg0 laggmonitor arp 224.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Apply(c, nil); err == nil || !strings.Contains(err.Error(), "not a unicast IPv4 address") {
		t.Errorf("multicast target: got %v, want refused", err)
	}
}
