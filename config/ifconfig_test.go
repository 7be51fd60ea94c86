package config_test

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/config"
)

// run applies ifconfig lines (each split on spaces) to cfg in turn.
func run(t *testing.T, cfg *config.Config, kindOf func(string) string, lines ...string) *config.Config {
	t.Helper()
	for _, line := range lines {
		cmd, err := config.ParseIfconfig(strings.Fields(line))
		if err != nil {
			t.Fatalf("ParseIfconfig(%q): %v", line, err)
		}
		next, err := cmd.Apply(cfg, kindOf)
		if err != nil {
			t.Fatalf("Apply(%q): %v", line, err)
		}
		cfg = next
	}
	return cfg
}

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func port(name, kind string, prio uint16) config.Port {
	return config.Port{Name: name, Kind: kind, Priority: prio}
}

// TestIfconfigManPage runs both sequences of lagg(4)'s EXAMPLES.
func TestIfconfigManPage(t *testing.T) {
	lacp := config.NewLagg("lagg0")
	lacp.Proto = "lacp"
	lacp.Ports = []config.Port{port("wm0", "afpacket", 32768), port("wm1", "afpacket", 32768)}
	lacp.Addresses = prefixes("192.168.1.1/24")
	failover := config.NewLagg("lagg0")
	failover.Proto = "failover"
	failover.Ports = []config.Port{port("wm0", "afpacket", 1000), port("wm1", "afpacket", 2000)}
	failover.Addresses = prefixes("192.168.1.1/24")
	tests := []struct {
		name  string
		lines []string
		want  config.Lagg
	}{
		{"lacp", []string{
			"lagg0 create",
			"lagg0 laggproto lacp laggport wm0 laggport wm1 192.168.1.1 netmask 255.255.255.0",
		}, lacp},
		{"failover", []string{
			"lagg0 create",
			"lagg0 laggproto failover",
			"lagg0 laggport wm0 pri 1000",
			"lagg0 laggport wm1 pri 2000",
			"lagg0 inet 192.168.1.1 netmask 255.255.255.0",
		}, failover},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, config.Default(), nil, tt.lines...)
			want := config.Default()
			want.Laggs = []config.Lagg{tt.want}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got.Laggs, want.Laggs)
			}
		})
	}
}

// base is a running configuration the option tests start from.
func base() *config.Config {
	c := config.Default()
	l0 := config.NewLagg("lagg0")
	l0.Proto = "failover"
	l0.Ports = []config.Port{port("wm0", "afpacket", 1000), port("wm1", "afpacket", 2000)}
	l0.Addresses = prefixes("192.168.1.1/24", "10.0.0.1/8", "fd00::1/64")
	l1 := config.NewLagg("lagg1")
	l1.Proto = "lacp"
	l1.Ports = []config.Port{port("tap0", "tap", 32768)}
	c.Laggs = []config.Lagg{l0, l1}
	c.Services = []config.Service{{Kind: "tcp-echo", Port: 7, Lagg: "lagg1"}}
	return c
}

func TestIfconfigApply(t *testing.T) {
	wire := func(string) string { return "wire" }
	tests := []struct {
		name   string
		line   string
		kindOf func(string) string
		check  func(l *config.Lagg) (got, want any)
	}{
		{"proto switch keeps ports", "lagg0 laggproto loadbalance", nil, func(l *config.Lagg) (any, any) {
			return []any{l.Proto, len(l.Ports)}, []any{"loadbalance", 2}
		}},
		{"-laggproto is none", "lagg0 -laggproto", nil, func(l *config.Lagg) (any, any) { return l.Proto, "none" }},
		{"roundrobin stride", "lagg0 laggproto roundrobin laggroundrobin stride 8", nil, func(l *config.Lagg) (any, any) {
			return []any{l.Proto, l.RoundRobin.Stride}, []any{"roundrobin", 8}
		}},
		{"FreeBSD rr_limit", "lagg0 laggproto roundrobin rr_limit 3", nil, func(l *config.Lagg) (any, any) {
			return l.RoundRobin.Stride, 3
		}},
		{"broadcast", "lagg0 laggproto broadcast", nil, func(l *config.Lagg) (any, any) { return l.Proto, "broadcast" }},
		{"remove a port", "lagg0 -laggport wm0", nil, func(l *config.Lagg) (any, any) {
			return l.Ports, []config.Port{port("wm1", "afpacket", 2000)}
		}},
		{"remove every port", "lagg0 -laggport wm0 -laggport wm1", nil, func(l *config.Lagg) (any, any) {
			return l.Ports, []config.Port(nil)
		}},
		{"laggportpri", "lagg0 laggportpri wm1 10", nil, func(l *config.Lagg) (any, any) {
			return l.Ports[1].Priority, uint16(10)
		}},
		{"laggportpri with pri word", "lagg0 laggportpri wm1 pri 0", nil, func(l *config.Lagg) (any, any) {
			return l.Ports[1].Priority, uint16(0)
		}},
		{"new port takes kindOf", "lagg0 laggport x0 pri 65535", wire, func(l *config.Lagg) (any, any) {
			return l.Ports[2], port("x0", "wire", 65535)
		}},
		{"new port without kindOf is afpacket", "lagg0 laggport x0", nil, func(l *config.Lagg) (any, any) {
			return l.Ports[2], port("x0", "afpacket", 32768)
		}},
		{"port known to the config keeps its kind", "lagg1 -laggport tap0 laggport tap0 pri 5", wire, func(l *config.Lagg) (any, any) {
			return l.Ports, []config.Port{port("tap0", "tap", 5)}
		}},
		{"rx-all off", "lagg0 laggfailover -rx-all", nil, func(l *config.Lagg) (any, any) { return l.Failover.RxAll, false }},
		{"rx-all last wins", "lagg0 laggfailover -rx-all rx-all", nil, func(l *config.Lagg) (any, any) { return l.Failover.RxAll, true }},
		{"proto then its option on one line", "lagg0 laggproto lacp lagglacp maxports 2", nil, func(l *config.Lagg) (any, any) {
			return []any{l.Proto, l.LACP.MaxPorts}, []any{"lacp", 2}
		}},
		{"every lacp option", "lagg1 lagglacp -multi-linkspeed maxports 4 minports 2 fast passive sysprio 100 key 7 fallback", nil, func(l *config.Lagg) (any, any) {
			return l.LACP, config.LACP{MultiSpeed: false, MaxPorts: 4, MinPorts: 2, Rate: "fast", Mode: "passive", SystemPriority: 100, Key: 7, Fallback: true}
		}},
		{"lacp negations restore defaults", "lagg1 lagglacp maxports 4 minports 2 sysprio 9 key 7 lagglacp -maxports -minports -sysprio -key multi-speed -fallback slow active", nil, func(l *config.Lagg) (any, any) {
			return l.LACP, config.NewLagg("").LACP
		}},
		{"inet replaces the first IPv4 address", "lagg0 inet 172.16.0.1/12", nil, func(l *config.Lagg) (any, any) {
			return l.Addresses, prefixes("172.16.0.1/12", "10.0.0.1/8", "fd00::1/64")
		}},
		{"inet on an existing address changes its mask", "lagg0 inet 10.0.0.1 netmask 0xffff0000", nil, func(l *config.Lagg) (any, any) {
			return l.Addresses, prefixes("192.168.1.1/24", "10.0.0.1/16", "fd00::1/64")
		}},
		{"inet without a mask keeps the existing length", "lagg0 inet 10.0.0.1", nil, func(l *config.Lagg) (any, any) {
			return l.Addresses, prefixes("192.168.1.1/24", "10.0.0.1/8", "fd00::1/64")
		}},
		{"inet alias adds with a classful mask", "lagg0 inet 172.17.0.1 alias", nil, func(l *config.Lagg) (any, any) {
			return l.Addresses[3], netip.MustParsePrefix("172.17.0.1/16")
		}},
		{"-alias removes", "lagg0 inet 10.0.0.1 -alias", nil, func(l *config.Lagg) (any, any) {
			return l.Addresses, prefixes("192.168.1.1/24", "fd00::1/64")
		}},
		{"delete removes whatever the length", "lagg0 inet 192.168.1.1/30 delete", nil, func(l *config.Lagg) (any, any) {
			return l.Addresses, prefixes("10.0.0.1/8", "fd00::1/64")
		}},
		{"inet6 adds, default /64", "lagg0 inet6 fd00::2", nil, func(l *config.Lagg) (any, any) {
			return l.Addresses[3], netip.MustParsePrefix("fd00::2/64")
		}},
		{"inet6 prefixlen", "lagg0 inet6 fd00::2 prefixlen 80 alias", nil, func(l *config.Lagg) (any, any) {
			return l.Addresses[3], netip.MustParsePrefix("fd00::2/80")
		}},
		{"bare IPv6 address", "lagg0 fd00::9/48", nil, func(l *config.Lagg) (any, any) {
			return l.Addresses[3], netip.MustParsePrefix("fd00::9/48")
		}},
		{"inet6 delete", "lagg0 inet6 fd00::1 delete", nil, func(l *config.Lagg) (any, any) {
			return l.Addresses, prefixes("192.168.1.1/24", "10.0.0.1/8")
		}},
		{"mtu", "lagg0 mtu 9000", nil, func(l *config.Lagg) (any, any) { return l.MTU, uint32(9000) }},
		{"down", "lagg0 down", nil, func(l *config.Lagg) (any, any) { return l.Down, true }},
		{"down then up", "lagg0 down up", nil, func(l *config.Lagg) (any, any) { return l.Down, false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			before := cfg.Clone()
			cmd, err := config.ParseIfconfig(strings.Fields(tt.line))
			if err != nil {
				t.Fatalf("ParseIfconfig: %v", err)
			}
			next, err := cmd.Apply(cfg, tt.kindOf)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !reflect.DeepEqual(cfg, before) {
				t.Errorf("Apply changed its input config")
			}
			got, want := tt.check(next.Lagg(cmd.Lagg))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestIfconfigCreateDestroy(t *testing.T) {
	cfg := run(t, base(), nil, "lagg2 create laggproto failover laggport wm5 inet 10.9.0.1/16 down")
	l := cfg.Lagg("lagg2")
	if l == nil {
		t.Fatalf("lagg2 not created; laggs %+v", cfg.Laggs)
	}
	want := config.NewLagg("lagg2")
	want.Proto, want.Down = "failover", true
	want.Ports = []config.Port{port("wm5", "afpacket", 32768)}
	want.Addresses = prefixes("10.9.0.1/16")
	if !reflect.DeepEqual(*l, want) {
		t.Errorf("created lagg2: got %+v, want %+v", *l, want)
	}
	cfg = run(t, cfg, nil, "lagg2 destroy")
	if cfg.Lagg("lagg2") != nil {
		t.Errorf("lagg2 still present after destroy")
	}
	if got, want := len(cfg.Laggs), 2; got != want {
		t.Errorf("got %d laggs after destroy, want %d", got, want)
	}
}

func TestIfconfigParseErrors(t *testing.T) {
	tests := []struct {
		line, want string
	}{
		{"", "missing interface name"},
		{"Lagg0 create", `"Lagg0" is not a lagg name`},
		{"lagg0", "no options given"},
		{"lagg0 frobnicate", `unknown option "frobnicate"`},
		{"lagg0 LaggPort wm0", "did you mean laggport?"},
		{"lagg0 maxports 2", "it is a lagglacp option"},
		{"lagg0 -rx-all", "it is a laggfailover option"},
		{"lagg0 laggproto", "laggproto: missing protocol"},
		{"lagg0 laggproto carrierpigeon", `unknown protocol "carrierpigeon"`},
		{"lagg0 laggroundrobin stride 0", "stride 0 is out of range 1..65535"},
		{"lagg0 laggroundrobin speed 2", `laggroundrobin: unknown option "speed"`},
		{"lagg0 rr_limit", "missing stride"},
		{"lagg0 laggport", "laggport: missing interface name"},
		{"lagg0 laggport wm0 pri", "laggport wm0 pri: missing priority"},
		{"lagg0 laggport wm0 pri 65536", "priority 65536 is out of range 0..65535"},
		{"lagg0 laggport wm0 pri -1", "priority -1 is out of range 0..65535"},
		{"lagg0 laggport wm0 pri high", `priority "high" is not a number`},
		{"lagg0 laggport a/b", `interface name "a/b" must not contain`},
		{"lagg0 laggport waytoolonginterface0", "at most 15"},
		{"lagg0 laggportpri wm0", "laggportpri wm0: missing priority"},
		{"lagg0 laggportpri wm0 70000", "priority 70000 is out of range 0..65535"},
		{"lagg0 laggfailover", "laggfailover: missing option"},
		{"lagg0 laggfailover up", `laggfailover: unknown option "up"`},
		{"lagg0 lagglacp", "lagglacp: missing option"},
		{"lagg0 lagglacp turbo", `lagglacp: unknown option "turbo"`},
		{"lagg0 lagglacp maxports 17", "value 17 is out of range 1..16"},
		{"lagg0 lagglacp maxports 0", "value 0 is out of range 1..16"},
		{"lagg0 lagglacp sysprio 0", "value 0 is out of range 1..65535"},
		{"lagg0 lagglacp key 65536", "value 65536 is out of range 0..65535"},
		{"lagg0 lagglacp optimistic", "not supported by ulagg"},
		{"lagg0 lagglacp -fast", `unknown option "-fast"`},
		{"lagg0 inet", "inet: missing address"},
		{"lagg0 inet 192.168.1.300", `"192.168.1.300" is not an address`},
		{"lagg0 192.168.1", `"192.168.1" is not an address`},
		{"lagg0 inet fd00::1", "not an IPv4 address (use inet6)"},
		{"lagg0 inet6 10.0.0.1", "not an IPv6 address (use inet)"},
		{"lagg0 inet 10.0.0.1/33", "prefix length 33 is out of range 0..32"},
		{"lagg0 inet 10.0.0.1 netmask", "netmask: missing mask"},
		{"lagg0 inet 10.0.0.1 netmask 255.0.255.0", "not contiguous"},
		{"lagg0 inet 10.0.0.1 netmask 255.255.255", "is not a mask"},
		{"lagg0 inet 10.0.0.1/8 netmask 255.255.0.0", "prefix length 16, but 8 was given"},
		{"lagg0 inet 10.0.0.1 alias delete", "conflicts with an earlier alias"},
		{"lagg0 inet6 fd00::1 netmask 255.0.0.0", "netmask is for inet"},
		{"lagg0 inet6 fe80::1%wm0", "zones are not supported"},
		{"lagg0 inet 10.0.0.1 broadcast 10.255.255.255", "broadcast is not supported"},
		{"lagg0 mtu", "mtu: missing MTU"},
		{"lagg0 mtu 67", "MTU 67 is out of range 68..65535"},
		{"lagg0 mtu 65536", "MTU 65536 is out of range 68..65535"},
		{"lagg0 up create", "create must be the first option"},
		{"lagg0 destroy up", "destroy must be the last option"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			cmd, err := config.ParseIfconfig(strings.Fields(tt.line))
			if err == nil {
				t.Fatalf("got command %q, want an error containing %q", cmd, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestIfconfigApplyErrors checks the refusals that need the configuration,
// and that the configuration given is left as it was.
func TestIfconfigApplyErrors(t *testing.T) {
	tests := []struct {
		line, want string
	}{
		{"lagg0 create", "lagg0 already exists"},
		{"lagg9 laggproto lacp", "lagg9: no such lagg (create it first"},
		{"lagg9 destroy", "lagg9: no such lagg"},
		{"lagg1 destroy", "the tcp-echo service on port 7 is bound to lagg1"},
		{"lagg0 laggport wm0", "wm0 is already a port of lagg0"},
		{"lagg0 laggport tap0", "tap0 is a port of lagg1; remove it there first"},
		{"lagg0 -laggport wm7", "wm7 is not a port of lagg0"},
		{"lagg0 laggportpri wm7 1", "wm7 is not a port of lagg0"},
		{"lagg0 lagglacp maxports 2", "lagglacp options need laggproto lacp; lagg0 runs failover"},
		{"lagg1 laggfailover -rx-all", "laggfailover options need laggproto failover; lagg1 runs lacp"},
		{"lagg0 laggproto lacp laggfailover rx-all", "laggfailover options need laggproto failover; lagg0 runs lacp"},
		{"lagg0 laggroundrobin stride 2", "laggroundrobin options need laggproto roundrobin; lagg0 runs failover"},
		{"lagg1 lagglacp maxports 2 minports 3", "minports 3 is more than maxports 2"},
		{"lagg0 inet 10.1.1.1 -alias", "10.1.1.1 is not an address of lagg0"},
		{"lagg0 inet 0.0.0.0/8", "not a valid configuration"},
		{"lagg0 inet 224.0.0.1/8 alias", "not a unicast address"},
		{"lagg0 laggproto failover laggport ok0 -laggport nope0", "nope0 is not a port of lagg0"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			cfg := base()
			before := cfg.Clone()
			cmd, err := config.ParseIfconfig(strings.Fields(tt.line))
			if err != nil {
				t.Fatalf("ParseIfconfig: %v", err)
			}
			next, err := cmd.Apply(cfg, nil)
			if err == nil {
				t.Fatalf("got config %+v, want an error containing %q", next.Laggs, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to contain %q", err, tt.want)
			}
			if !reflect.DeepEqual(cfg, before) {
				t.Errorf("a refused line changed the config:\ngot  %+v\nwant %+v", cfg.Laggs, before.Laggs)
			}
		})
	}
}

func TestIfconfigMaxPorts(t *testing.T) {
	cfg := run(t, config.Default(), nil, "lagg0 create")
	for i := range config.MaxPorts {
		cfg = run(t, cfg, nil, "lagg0 laggport p"+strings.Repeat("x", i%3)+itoa(i))
	}
	cmd, err := config.ParseIfconfig([]string{"lagg0", "laggport", "one-more"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Apply(cfg, nil); err == nil || !strings.Contains(err.Error(), "maximum of 32 ports") {
		t.Errorf("got error %v, want one about the maximum of 32 ports", err)
	}
}

func itoa(i int) string { return string(rune('a'+i/10)) + string(rune('0'+i%10)) }

func TestIfconfigArgs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"lagg0 laggproto lacp laggport wm0 laggport wm1 192.168.1.1 netmask 255.255.255.0",
			"lagg0 laggproto lacp laggport wm0 laggport wm1 inet 192.168.1.1/24"},
		{"lagg0 -laggproto laggport wm0 pri 1000 -laggport wm1", "lagg0 laggproto none laggport wm0 pri 1000 -laggport wm1"},
		{"lagg0 laggportpri wm0 pri 7", "lagg0 laggportpri wm0 7"},
		{"lagg0 laggfailover rx-all -rx-all", "lagg0 laggfailover rx-all laggfailover -rx-all"},
		{"lagg0 lagglacp multi-linkspeed -maxports key 0 up", "lagg0 lagglacp multi-speed lagglacp -maxports lagglacp key 0 up"},
		{"lagg0 inet 10.0.0.1 alias inet 10.0.0.2 -alias inet6 fd00::1 prefixlen 64 alias", "lagg0 inet 10.0.0.1 alias inet 10.0.0.2 delete inet6 fd00::1/64"},
		{"lagg0 create mtu 9000 down", "lagg0 create mtu 9000 down"},
		{"lagg0 destroy", "lagg0 destroy"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			cmd, err := config.ParseIfconfig(strings.Fields(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := cmd.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			again, err := config.ParseIfconfig(cmd.Args())
			if err != nil {
				t.Fatalf("parsing the canonical form: %v", err)
			}
			if !slices.Equal(again.Args(), cmd.Args()) {
				t.Errorf("canonical form does not parse back: got %q, want %q", again, cmd)
			}
		})
	}
}

func TestDownRoundTrip(t *testing.T) {
	cfg := run(t, base(), nil, "lagg0 down")
	out, err := config.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "down = true\n") {
		t.Errorf("Marshal output lacks down = true:\n%s", out)
	}
	back, err := config.Parse("saved.toml", out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Errorf("Parse(Marshal(c)):\ngot  %+v\nwant %+v", back.Laggs, cfg.Laggs)
	}
	if ch := config.Diff(base(), cfg); len(ch) != 1 || ch[0].Op != config.OpUpdateLagg || ch[0].Lagg != "lagg0" {
		t.Errorf("Diff after down: got %+v, want one update-lagg of lagg0", ch)
	}
}
