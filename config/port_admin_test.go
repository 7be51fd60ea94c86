package config_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/config"
)

const disabledTOML = `
[[lagg]]
name = "lagg0"
proto = "failover"

[[lagg.port]]
name = "wm0"
disabled = true

[[lagg.port]]
name = "wm1"
disabled = false

[[lagg.port]]
name = "wm2"
`

// TestPortDisabledKey: disabled = true parses into Port.Disabled, Marshal
// writes it (and only when true), and what it writes parses back equal.
func TestPortDisabledKey(t *testing.T) {
	c, err := config.Parse("disabled.toml", []byte(disabledTOML))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Laggs[0].DisabledPorts(); !slices.Equal(got, []string{"wm0"}) {
		t.Fatalf("DisabledPorts %v, want [wm0]", got)
	}
	out, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "disabled"); n != 1 {
		t.Errorf("Marshal wrote disabled %d times, want once:\n%s", n, out)
	}
	back, err := config.Parse("saved.toml", out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Laggs[0].Ports, c.Laggs[0].Ports) {
		t.Errorf("round trip: got %+v, want %+v", back.Laggs[0].Ports, c.Laggs[0].Ports)
	}
	if _, err := config.Parse("bad.toml", []byte(strings.Replace(disabledTOML, "disabled = true", `disabled = "yes"`, 1))); err == nil {
		t.Error(`disabled = "yes" parsed`)
	}
}

func TestIfconfigActive(t *testing.T) {
	base, err := config.Parse("disabled.toml", []byte(disabledTOML))
	if err != nil {
		t.Fatal(err)
	}
	apply := func(args ...string) *config.Config {
		t.Helper()
		return applyIfconfig(t, base, args...)
	}
	for _, tc := range []struct {
		args []string
		want []string // disabled ports after
		diff string   // the one diff line, "" for none
	}{
		{[]string{"lagg0", "laggport", "wm1", "-active"}, []string{"wm0", "wm1"}, "port wm1 disabled false -> true"},
		{[]string{"lagg0", "laggport", "wm0", "active"}, nil, "port wm0 disabled true -> false"},
		{[]string{"lagg0", "laggport", "wm0", "-active"}, []string{"wm0"}, ""},
		{[]string{"lagg0", "laggport", "wm3", "pri", "5", "-active", "-tso"}, []string{"wm0", "wm3"}, "port wm3 added"},
		{[]string{"lagg0", "laggport", "wm2", "-tso", "-active"}, []string{"wm0", "wm2"}, "gso true -> false, disabled false -> true"},
	} {
		next := apply(tc.args...)
		if got := next.Laggs[0].DisabledPorts(); !slices.Equal(got, tc.want) {
			t.Errorf("%v: disabled %v, want %v", tc.args, got, tc.want)
		}
		lines := config.Lines(config.Items(base, next))
		switch {
		case tc.diff == "" && len(lines) != 0:
			t.Errorf("%v: diff %q, want none", tc.args, lines)
		case tc.diff != "" && (len(lines) != 1 || !strings.Contains(lines[0], tc.diff)):
			t.Errorf("%v: diff %q, want one line with %q", tc.args, lines, tc.diff)
		}
	}
	for _, bad := range [][]string{
		{"lagg0", "laggport", "wm1", "-active", "active"},
		{"lagg0", "laggport", "wm1", "-active", "-active"},
	} {
		if _, err := config.ParseIfconfig(bad); err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("%v: err %v, want given twice", bad, err)
		}
	}
	// A priority with -active on a port the lagg has is refused, as pri is.
	cmd, err := config.ParseIfconfig([]string{"lagg0", "laggport", "wm1", "pri", "3", "-active"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Apply(base, nil); err == nil || !strings.Contains(err.Error(), "-active") {
		t.Errorf("laggport wm1 pri 3 -active on a port it has: err %v, want the already-a-port hint", err)
	}
}
