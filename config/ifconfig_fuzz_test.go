package config_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/config"
)

// FuzzIfconfig checks that ParseIfconfig never panics, that what it accepts
// prints to a canonical form that parses back to the same command, and that
// Apply never changes its input, and either refuses with a message or gives
// a valid configuration that survives a save (Marshal) and load (Parse).
func FuzzIfconfig(f *testing.F) {
	for _, line := range []string{
		// lagg(4) EXAMPLES.
		"lagg0 create",
		"lagg0 laggproto lacp laggport wm0 laggport wm1 192.168.1.1 netmask 255.255.255.0",
		"lagg0 laggproto failover",
		"lagg0 laggport wm0 pri 1000",
		"lagg0 laggport wm1 pri 2000",
		"lagg0 inet 192.168.1.1 netmask 255.255.255.0",
		// The rest of the syntax.
		"lagg0 destroy",
		"lagg0 -laggport wm0 laggportpri wm1 5 -laggproto",
		"lagg0 laggfailover -rx-all rx-all",
		"lagg1 lagglacp multi-speed -multi-linkspeed maxports 2 -maxports minports 1 fast slow passive active sysprio 9 key 0 -key fallback -fallback",
		"lagg0 inet 10.0.0.1/8 alias inet 10.0.0.1 -alias inet6 fd00::2 prefixlen 64 delete",
		"lagg0 fd00::9/48 mtu 9000 down up",
		"lagg2 create laggproto lacp lagglacp maxports 2 laggport tap0",
		"lagg0 inet 10.0.0.1 netmask 0xffff0000",
	} {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := config.ParseIfconfig(strings.Fields(line))
		if err != nil {
			if cmd != nil || err.Error() == "" {
				t.Fatalf("ParseIfconfig: got command %v and error %q, want nil and a message", cmd, err)
			}
			return
		}
		again, err := config.ParseIfconfig(cmd.Args())
		if err != nil {
			t.Fatalf("canonical form %q does not parse: %v", cmd, err)
		}
		if !slices.Equal(again.Args(), cmd.Args()) {
			t.Fatalf("canonical form changes: got %q, want %q", again, cmd)
		}
		cfg := base()
		before := cfg.Clone()
		next, err := cmd.Apply(cfg, func(string) string { return "wire" })
		if !reflect.DeepEqual(cfg, before) {
			t.Fatalf("Apply(%q) changed its input", cmd)
		}
		if err != nil {
			if next != nil || err.Error() == "" {
				t.Fatalf("Apply: got config and error %q, want nil and a message", err)
			}
			return
		}
		if err := next.Validate(); err != nil {
			t.Fatalf("Apply(%q) gave a config that does not validate: %v", cmd, err)
		}
		out, err := config.Marshal(next)
		if err != nil {
			t.Fatalf("Marshal after Apply(%q): %v", cmd, err)
		}
		back, err := config.Parse("saved.toml", out)
		if err != nil {
			t.Fatalf("Parse(Marshal) after Apply(%q): %v\n%s", cmd, err, out)
		}
		if !reflect.DeepEqual(back, next) {
			t.Fatalf("save/load after Apply(%q):\ngot  %+v\nwant %+v", cmd, back.Laggs, next.Laggs)
		}
	})
}
