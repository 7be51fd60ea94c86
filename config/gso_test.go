package config_test

import (
	"strings"
	"testing"

	"github.com/ulagg/ulagg/config"
)

const gsoTOML = `
[[lagg]]
name = "lagg0"
proto = "lacp"

[[lagg.port]]
name = "wm0"
gso = false

[[lagg.port]]
name = "wm1"

[[lagg.port]]
name = "wm2"
gso = true
`

// TestPortGSOKey: gso = false in [[lagg.port]] turns host GSO off for that
// port (Port.DisableGSO); absent or true keeps it on; Marshal writes only
// gso = false, and what it writes parses back equal.
func TestPortGSOKey(t *testing.T) {
	c, err := config.Parse("gso.toml", []byte(gsoTOML))
	if err != nil {
		t.Fatal(err)
	}
	got := []bool{}
	for _, p := range c.Laggs[0].Ports {
		got = append(got, p.DisableGSO)
	}
	if want := []bool{true, false, false}; !equalBools(got, want) {
		t.Errorf("DisableGSO of wm0, wm1, wm2: got %v, want %v", got, want)
	}
	out, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "gso = false"); n != 1 {
		t.Errorf("marshalled config has %d lines gso = false, want 1:\n%s", n, out)
	}
	if strings.Contains(string(out), "gso = true") {
		t.Errorf("marshalled config writes the default gso = true:\n%s", out)
	}
	back, err := config.Parse("back.toml", out)
	if err != nil {
		t.Fatalf("parse marshalled: %v\n%s", err, out)
	}
	if len(config.Items(c, back)) != 0 {
		t.Errorf("round trip differs: %v", config.Lines(config.Items(c, back)))
	}
	if !back.Laggs[0].Ports[0].DisableGSO {
		t.Errorf("round trip lost gso = false")
	}
	_, err = config.Parse("bad.toml", []byte("[[lagg]]\nname = \"lagg0\"\n[[lagg.port]]\nname = \"wm0\"\ngso = \"off\"\n"))
	if err == nil || !strings.Contains(err.Error(), "lagg[0].port[0].gso") {
		t.Errorf("gso = \"off\": got %v, want an error naming lagg[0].port[0].gso", err)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestIfconfigTSO: laggport IF -tso adds a port without GSO, laggport IF
// tso/-tso on a port the lagg has changes only that, in either order with
// pri; the canonical words parse back the same; tso4/tso6 are refused with
// a hint, as is a stray -tso.
func TestIfconfigTSO(t *testing.T) {
	base, err := config.Parse("gso.toml", []byte(gsoTOML))
	if err != nil {
		t.Fatal(err)
	}
	apply := func(args ...string) *config.Config {
		t.Helper()
		return applyIfconfig(t, base, args...)
	}
	port := func(c *config.Config, name string) config.Port {
		for _, p := range c.Laggs[0].Ports {
			if p.Name == name {
				return p
			}
		}
		t.Fatalf("no port %s", name)
		return config.Port{}
	}
	if p := port(apply("lagg0", "laggport", "wm3", "-tso"), "wm3"); !p.DisableGSO || p.Priority != config.DefaultPriority {
		t.Errorf("laggport wm3 -tso: got %+v", p)
	}
	if p := port(apply("lagg0", "laggport", "wm3", "-tso", "pri", "7"), "wm3"); !p.DisableGSO || p.Priority != 7 {
		t.Errorf("laggport wm3 -tso pri 7: got %+v", p)
	}
	if p := port(apply("lagg0", "laggport", "wm3", "pri", "7", "tso"), "wm3"); p.DisableGSO || p.Priority != 7 {
		t.Errorf("laggport wm3 pri 7 tso: got %+v", p)
	}
	if p := port(apply("lagg0", "laggport", "wm0", "tso"), "wm0"); p.DisableGSO {
		t.Errorf("laggport wm0 tso on a port without GSO: got %+v", p)
	}
	next := apply("lagg0", "laggport", "wm1", "-tso")
	if p := port(next, "wm1"); !p.DisableGSO {
		t.Errorf("laggport wm1 -tso on a port with GSO: got %+v", p)
	}
	if lines := config.Lines(config.Items(base, next)); len(lines) != 1 || !strings.Contains(lines[0], "gso true -> false") {
		t.Errorf("diff of laggport wm1 -tso: got %q, want one line with gso true -> false", lines)
	}
	cmd, err := config.ParseIfconfig([]string{"lagg0", "laggport", "wm0", "pri", "7", "-tso"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Apply(base, nil); err == nil || !strings.Contains(err.Error(), "already a port") {
		t.Errorf("laggport wm0 pri 7 -tso on a port it has: got %v, want already a port", err)
	}
	for _, args := range [][]string{
		{"lagg0", "laggport", "wm3", "-tso4"},
		{"lagg0", "laggport", "wm3", "tso", "-tso"},
		{"lagg0", "-tso"},
	} {
		if _, err := config.ParseIfconfig(args); err == nil || !strings.Contains(err.Error(), "tso") {
			t.Errorf("%v: got %v, want an error about tso", args, err)
		}
	}
}

// TestPortSameOpening: a change of kind, speed or GSO means reopening the
// port; a change of priority does not.
func TestPortSameOpening(t *testing.T) {
	p := config.Port{Name: "wm0", Kind: "afpacket", Priority: 1}
	q := p
	q.Priority = 2
	if !p.SameOpening(q) {
		t.Errorf("priority change: SameOpening false")
	}
	q.DisableGSO = true
	if p.SameOpening(q) {
		t.Errorf("gso change: SameOpening true")
	}
}

// applyIfconfig parses args as an ifconfig command, checks that its
// canonical words parse back the same, and applies it to base.
func applyIfconfig(t *testing.T, base *config.Config, args ...string) *config.Config {
	t.Helper()
	cmd, err := config.ParseIfconfig(args)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	again, err := config.ParseIfconfig(cmd.Args())
	if err != nil || again.String() != cmd.String() {
		t.Errorf("%v: canonical %q parses back as %v, %v", args, cmd.String(), again, err)
	}
	next, err := cmd.Apply(base, nil)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return next
}
