package config_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/ulagg/ulagg/config"
)

func laggs(names ...string) *config.Config {
	c := config.Default()
	for _, n := range names {
		c.Laggs = append(c.Laggs, config.NewLagg(n))
	}
	return c
}

// changeSummary renders changes as "op:name" for easy comparison.
func changeSummary(t *testing.T, cs []config.Change) []string {
	t.Helper()
	var out []string
	for _, c := range cs {
		switch c.Op {
		case config.OpAddLagg:
			if c.Old != nil || c.New == nil || c.New.Name != c.Lagg {
				t.Errorf("%s %s: got Old=%v New=%v, want only New named %q", c.Op, c.Lagg, c.Old, c.New, c.Lagg)
			}
		case config.OpRemoveLagg:
			if c.New != nil || c.Old == nil || c.Old.Name != c.Lagg {
				t.Errorf("%s %s: got Old=%v New=%v, want only Old named %q", c.Op, c.Lagg, c.Old, c.New, c.Lagg)
			}
		case config.OpUpdateLagg:
			if c.Old == nil || c.New == nil || c.Old.Name != c.Lagg || c.New.Name != c.Lagg {
				t.Errorf("%s %s: got Old=%v New=%v, want both named %q", c.Op, c.Lagg, c.Old, c.New, c.Lagg)
			}
		default:
			t.Errorf("unknown op %q", c.Op)
		}
		out = append(out, c.Op+":"+c.Lagg)
	}
	return out
}

func TestDiff(t *testing.T) {
	withMTU := laggs("a", "b")
	withMTU.Laggs[1].MTU = 9000
	withPort := laggs("a")
	withPort.Laggs[0].Ports = []config.Port{{Name: "wm0", Kind: "afpacket", Priority: config.DefaultPriority}}
	withAddr := laggs("a")
	withAddr.Laggs[0].Addresses = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/8")}
	emptyAddr := laggs("a")
	emptyAddr.Laggs[0].Addresses = []netip.Prefix{}
	otherServices := laggs("a")
	otherServices.Services = []config.Service{{Kind: "tcp-echo", Port: 7}}
	otherServices.Metrics.Listen = ":9100"
	mixed := laggs("c", "b", "d")
	mixed.Laggs[1].Proto = "lacp"

	tests := []struct {
		name     string
		old, new *config.Config
		want     []string
	}{
		{"equal", laggs("a", "b"), laggs("a", "b"), nil},
		{"both nil", nil, nil, nil},
		{"from nil", nil, laggs("a"), []string{"add-lagg:a"}},
		{"to nil", laggs("a"), nil, []string{"remove-lagg:a"}},
		{"add", laggs("a"), laggs("a", "b"), []string{"add-lagg:b"}},
		{"remove", laggs("a", "b"), laggs("b"), []string{"remove-lagg:a"}},
		{"update mtu", laggs("a", "b"), withMTU, []string{"update-lagg:b"}},
		{"update ports", laggs("a"), withPort, []string{"update-lagg:a"}},
		{"update addresses", laggs("a"), withAddr, []string{"update-lagg:a"}},
		{"nil and empty list equal", laggs("a"), emptyAddr, nil},
		{"reorder is no change", laggs("a", "b"), laggs("b", "a"), nil},
		{"rename", laggs("a"), laggs("b"), []string{"remove-lagg:a", "add-lagg:b"}},
		{"mixed order", laggs("x", "a", "b"), mixed, []string{"remove-lagg:x", "remove-lagg:a", "update-lagg:b", "add-lagg:c", "add-lagg:d"}},
		{"services and metrics are not lagg changes", laggs("a"), otherServices, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := changeSummary(t, config.Diff(tt.old, tt.new))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Diff: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDiffPointsIntoConfigs(t *testing.T) {
	old, new := laggs("a"), laggs("a")
	new.Laggs[0].MTU = 1500
	cs := config.Diff(old, new)
	if len(cs) != 1 {
		t.Fatalf("Diff: got %d changes, want 1", len(cs))
	}
	if cs[0].Old != &old.Laggs[0] || cs[0].New != &new.Laggs[0] {
		t.Errorf("Diff: got Old=%p New=%p, want %p and %p", cs[0].Old, cs[0].New, &old.Laggs[0], &new.Laggs[0])
	}
}

func TestServicesEqual(t *testing.T) {
	svc := func(ss ...config.Service) *config.Config {
		c := config.Default()
		c.Services = ss
		return c
	}
	echo := config.Service{Kind: "tcp-echo", Port: 7}
	udp := config.Service{Kind: "udp-echo", Port: 7}
	scoped := config.Service{Kind: "tcp-echo", Port: 7, Lagg: "lagg0"}
	tests := []struct {
		name string
		a, b *config.Config
		want bool
	}{
		{"both empty", svc(), svc(), true},
		{"nil and empty", nil, svc(), true},
		{"same", svc(echo, udp), svc(echo, udp), true},
		{"order ignored", svc(echo, udp), svc(udp, echo), true},
		{"added", svc(echo), svc(echo, udp), false},
		{"removed", svc(echo, udp), svc(udp), false},
		{"scope changed", svc(echo), svc(scoped), false},
		{"laggs ignored", laggs("a"), laggs("b"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := config.ServicesEqual(tt.a, tt.b); got != tt.want {
				t.Errorf("ServicesEqual: got %t, want %t", got, tt.want)
			}
			if got := config.ServicesEqual(tt.b, tt.a); got != tt.want {
				t.Errorf("ServicesEqual (swapped): got %t, want %t", got, tt.want)
			}
		})
	}
}

// TestItems checks the one-line items of a diff: what each says, in
// order, and that a lagg created lists what it has beyond the defaults.
func TestItems(t *testing.T) {
	old := laggs("lagg0", "lagg1")
	old.Laggs[0].Proto = config.ProtoFailover
	old.Laggs[0].Addresses = []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24"), netip.MustParsePrefix("192.168.1.3/24")}
	old.Laggs[0].Ports = []config.Port{{Name: "p0", Kind: "afpacket", Priority: 1000}, {Name: "p1", Kind: "afpacket", Priority: 2000}}
	old.Laggs[1].Ports = []config.Port{{Name: "p2", Kind: "afpacket", Priority: config.DefaultPriority}}
	old.Services = []config.Service{{Kind: "tcp-echo", Port: 7}}
	new := old.Clone()
	l0 := new.Lagg("lagg0")
	l0.MTU = 9000
	l0.Down = true
	l0.Ports = []config.Port{{Name: "p1", Kind: "afpacket", Priority: 10}, {Name: "p2", Kind: "afpacket", Priority: config.DefaultPriority}}
	l0.Addresses = []netip.Prefix{netip.MustParsePrefix("192.168.1.1/16")}
	new.Laggs = slices.DeleteFunc(new.Laggs, func(l config.Lagg) bool { return l.Name == "lagg1" })
	l2 := config.NewLagg("lagg2")
	l2.Proto = config.ProtoLACP
	l2.Ports = []config.Port{{Name: "p3", Kind: "tap", Priority: 5}}
	new.Laggs = append(new.Laggs, l2)
	new.Services = []config.Service{{Kind: "udp-echo", Port: 7}}
	new.Metrics.Listen = "127.0.0.1:9477"
	want := []string{
		"lagg1: destroyed",
		"lagg0: mtu auto -> 9000",
		"lagg0: admin up -> down",
		"lagg0: port p0 removed (was priority 1000)",
		"lagg0: port p1 priority 2000 -> 10",
		"lagg0: port p2 added (priority 32768)",
		"lagg0: address 192.168.1.3/24 removed",
		"lagg0: address 192.168.1.1/24 -> 192.168.1.1/16",
		"lagg2: created",
		"lagg2: proto none -> lacp",
		"lagg2: port p3 added (priority 5, kind tap)",
		"service tcp-echo 7 removed",
		"service udp-echo 7 added",
		"metrics.listen (none) -> 127.0.0.1:9477",
	}
	if got := config.Lines(config.Items(old, new)); !slices.Equal(got, want) {
		t.Errorf("Items:\ngot  %q\nwant %q", got, want)
	}
	if got := config.Items(new, new.Clone()); len(got) != 0 {
		t.Errorf("Items of equal configs: %q", config.Lines(got))
	}
	// Port order is no change.
	reordered := old.Clone()
	ps := reordered.Lagg("lagg0").Ports
	ps[0], ps[1] = ps[1], ps[0]
	if got := config.Items(old, reordered); len(got) != 0 || !config.LaggEqual(old.Lagg("lagg0"), reordered.Lagg("lagg0")) {
		t.Errorf("reordered ports: %q", config.Lines(got))
	}
}

// TestDiscarded: the runtime changes a reload would undo are those the
// file does not also make, and a lagg created at runtime counts whole.
func TestDiscarded(t *testing.T) {
	base := laggs("lagg0")
	base.Laggs[0].Ports = []config.Port{{Name: "p0", Kind: "afpacket", Priority: 1000}}
	running := base.Clone()
	running.Lagg("lagg0").MTU = 9000
	running.Lagg("lagg0").Ports[0].Priority = 5
	running.Laggs = append(running.Laggs, config.NewLagg("lagg1"))
	tests := []struct {
		name string
		file *config.Config
		want []string
	}{
		{"file unchanged", base, []string{"lagg0: mtu auto -> 9000", "lagg0: port p0 priority 1000 -> 5", "lagg1: created"}},
		{"file has them", running, nil},
		{"file has one", func() *config.Config {
			f := running.Clone()
			f.Lagg("lagg0").MTU = 0
			return f
		}(), []string{"lagg0: mtu auto -> 9000"}},
		{"file changes something else", func() *config.Config {
			f := running.Clone()
			f.Lagg("lagg0").Hash = []string{"l2"}
			return f
		}(), nil},
		{"file drops the lagg", laggs(), []string{"lagg0: mtu auto -> 9000", "lagg0: port p0 priority 1000 -> 5", "lagg1: created"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := config.Lines(config.Discarded(base, running, tt.file)); !slices.Equal(got, tt.want) {
				t.Errorf("Discarded:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
	if got := config.Discarded(base, base, laggs("x")); len(got) != 0 {
		t.Errorf("no runtime changes, nothing discarded: got %q", config.Lines(got))
	}
}
