package config_test

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/config"
)

const routeLagg = "[[lagg]]\nname = \"lagg0\"\naddresses = [\"192.168.1.1/24\", \"fd00::1/64\"]\n" // lines 1-3

func TestParseRoutes(t *testing.T) {
	c, err := config.Parse("t.toml", []byte(routeLagg+`
[[route]]
to = "default"
via = "192.168.1.254"

[[route]]
to = "default"
via = "fd00::fe"
metric = 5

[[route]]
to = "10.9.0.0/16"
lagg = "lagg0"

[[route]]
to = "10.8.0.7"
via = "192.168.1.253"
interface = "lagg0"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []config.Route{
		{To: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("192.168.1.254")},
		{To: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("fd00::fe"), Metric: 5},
		{To: netip.MustParsePrefix("10.9.0.0/16"), Interface: "lagg0"},
		{To: netip.MustParsePrefix("10.8.0.7/32"), Via: netip.MustParseAddr("192.168.1.253"), Interface: "lagg0"},
	}
	if !reflect.DeepEqual(c.Routes, want) {
		t.Fatalf("routes: got %v, want %v", c.Routes, want)
	}
	out, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := config.Parse("m.toml", out)
	if err != nil {
		t.Fatalf("reparse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back.Routes, want) {
		t.Errorf("round trip: got %v, want %v\n%s", back.Routes, want, out)
	}
	if !strings.Contains(string(out), "[[route]]\nto = \"default\"\nvia = \"fd00::fe\"\nmetric = 5\n") {
		t.Errorf("marshal: want the v6 default written as default:\n%s", out)
	}
}

func TestParseRouteErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"bad prefix", "[[route]]\nto = \"10.0.0.0/33\"\nvia = \"192.168.1.254\"\n", `t.toml:6: route[0].to: "10.0.0.0/33" is not a destination`},
		{"host bits", "[[route]]\nto = \"10.0.0.1/8\"\nvia = \"192.168.1.254\"\n", `did you mean 10.0.0.0/8?`},
		{"family mismatch", "[[route]]\nto = \"::/0\"\nvia = \"192.168.1.254\"\n", `t.toml:7: route[0].via: gateway 192.168.1.254 is IPv4 but the destination ::/0 is IPv6`},
		{"bad gateway", "[[route]]\nto = \"default\"\nvia = \"router\"\n", `t.toml:7: route[0].via: "router" is not a gateway address`},
		{"default without family", "[[route]]\nto = \"default\"\ninterface = \"lagg0\"\n", `"default" needs a gateway`},
		{"unknown interface", "[[route]]\nto = \"default\"\nvia = \"192.168.1.254\"\ninterface = \"lagg9\"\n", `t.toml:8: route[0].interface: no interface is named "lagg9" (interfaces: lagg0)`},
		{"neither", "[[route]]\nto = \"10.0.0.0/8\"\n", `needs a gateway (via) or an interface`},
		{"no to", "[[route]]\nvia = \"192.168.1.254\"\n", `route[0].to: required key is missing`},
		{"multicast gw", "[[route]]\nto = \"default\"\nvia = \"224.0.0.1\"\n", `224.0.0.1 cannot be a gateway`},
		{"duplicate", "[[route]]\nto = \"default\"\nvia = \"192.168.1.254\"\n[[route]]\nto = \"0.0.0.0/0\"\nvia = \"192.168.1.254\"\nmetric = 3\n", `t.toml:9: route[1].to: duplicate of route[0]`},
		{"unknown key", "[[route]]\nto = \"default\"\nvia = \"192.168.1.254\"\ngateway = \"x\"\n", `route[0].gateway: unknown key`},
		{"metric range", "[[route]]\nto = \"default\"\nvia = \"192.168.1.254\"\nmetric = -1\n", `route[0].metric: -1 is out of range`},
		{"link-local gateway", "[[route]]\nto = \"default\"\nvia = \"fe80::1\"\n", `gateway fe80::1 is link-local: name its interface`},
		{"both names", "[[route]]\nto = \"default\"\nvia = \"192.168.1.254\"\nlagg = \"lagg0\"\ninterface = \"lagg0\"\n", `give interface or lagg, not both`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("t.toml", []byte(routeLagg+"\n"+tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseRouteWords(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	tests := []struct {
		args string
		want config.RouteCommand
	}{
		{"add default 192.168.1.254", config.RouteCommand{Op: "add", Family: 4, Route: config.Route{To: p("0.0.0.0/0"), Via: a("192.168.1.254")}}},
		{"add -net 10.0.0.0/8 192.168.1.254", config.RouteCommand{Op: "add", Family: 4, Route: config.Route{To: p("10.0.0.0/8"), Via: a("192.168.1.254")}}},
		{"add -net 10.0.0.0 192.168.1.254 -netmask 255.0.0.0 -metric 7", config.RouteCommand{Op: "add", Family: 4, Route: config.Route{To: p("10.0.0.0/8"), Via: a("192.168.1.254"), Metric: 7}}},
		{"add -inet6 default fd00::1", config.RouteCommand{Op: "add", Family: 6, Route: config.Route{To: p("::/0"), Via: a("fd00::1")}}},
		{"add -inet6 2001:db8:: fd00::1 -prefixlen 32", config.RouteCommand{Op: "add", Family: 6, Route: config.Route{To: p("2001:db8::/32"), Via: a("fd00::1")}}},
		{"add -host 10.1.2.3 192.168.1.254", config.RouteCommand{Op: "add", Family: 4, Route: config.Route{To: p("10.1.2.3/32"), Via: a("192.168.1.254")}}},
		{"add -net 10.9.0.0/16 -ifp lagg0", config.RouteCommand{Op: "add", Family: 4, Route: config.Route{To: p("10.9.0.0/16"), Interface: "lagg0"}}},
		{"delete default", config.RouteCommand{Op: "delete", Family: 0, Route: config.Route{}}}, // error: no family
		{"delete -inet6 default", config.RouteCommand{Op: "delete", Family: 6, Route: config.Route{To: p("::/0")}}},
		{"del 10.0.0.0/8 192.168.1.254", config.RouteCommand{Op: "delete", Family: 4, Route: config.Route{To: p("10.0.0.0/8"), Via: a("192.168.1.254")}}},
		{"show -inet6", config.RouteCommand{Op: "show", Family: 6}},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			got, err := config.ParseRoute(strings.Fields(tt.args))
			if tt.args == "delete default" {
				if err == nil {
					t.Fatalf("got %+v, want an error (default of which family?)", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got %+v, want %+v", *got, tt.want)
			}
			if tt.want.Op != "show" {
				back, err := config.ParseRoute(strings.Fields(got.String()))
				if err != nil || !reflect.DeepEqual(back, got) {
					t.Errorf("String %q reparses to %+v, %v", got.String(), back, err)
				}
			}
		})
	}
	for _, bad := range []string{
		"", "flush", "add", "add default", "add -net 10.0.0.0 192.168.1.254", "add 10.0.0.1/8 192.168.1.254",
		"add -inet6 default 192.168.1.254", "add default 192.168.1.254 -metric x", "add default 192.168.1.254 -ifp",
		"add default 192.168.1.254 -bogus", "add 10.0.0.0 192.168.1.254 -netmask 255.0.255.0", "add a b c",
		"add -host 10.0.0.0/8 192.168.1.254", "show 10.0.0.0/8", "add ::ffff:10.0.0.0/104 192.168.1.254",
	} {
		if got, err := config.ParseRoute(strings.Fields(bad)); err == nil {
			t.Errorf("%q: got %+v, want an error", bad, got)
		}
	}
}

func TestRouteCommandApply(t *testing.T) {
	c, err := config.Parse("t.toml", []byte(routeLagg))
	if err != nil {
		t.Fatal(err)
	}
	run := func(c *config.Config, words string) (*config.Config, error) {
		cmd, err := config.ParseRoute(strings.Fields(words))
		if err != nil {
			t.Fatal(err)
		}
		return cmd.Apply(c)
	}
	c1, err := run(c, "add default 192.168.1.254")
	if err != nil || len(c1.Routes) != 1 || len(c.Routes) != 0 {
		t.Fatalf("add: %v %v (original %v)", c1, err, c.Routes)
	}
	if _, err := run(c1, "add default 192.168.1.254 -metric 3"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("add twice: got %v, want 'exists'", err)
	}
	if _, err := run(c1, "add default 192.168.1.254 -ifp lagg7"); err == nil || !strings.Contains(err.Error(), `no interface is named "lagg7"`) {
		t.Errorf("unknown -ifp: got %v", err)
	}
	c2, err := run(c1, "add -inet6 default fd00::fe")
	if err != nil {
		t.Fatal(err)
	}
	items := config.Lines(config.Items(c1, c2))
	if len(items) != 1 || items[0] != "route default fd00::fe added (metric 0)" {
		t.Errorf("diff: got %q", items)
	}
	c3, err := run(c2, "delete -inet default")
	if err != nil || len(c3.Routes) != 1 || c3.Routes[0].Via != netip.MustParseAddr("fd00::fe") {
		t.Fatalf("delete -inet default: %v %v", c3.Routes, err)
	}
	if got := config.Lines(config.Items(c2, c3)); len(got) != 1 || got[0] != "route default 192.168.1.254 removed" {
		t.Errorf("diff: got %q", got)
	}
	if _, err := run(c3, "delete -inet default"); err == nil {
		t.Errorf("delete twice: got nil error")
	}
	if config.RoutesEqual(c2, c3) || !config.RoutesEqual(c3, c3.Clone()) {
		t.Errorf("RoutesEqual wrong")
	}
	// A metric change is one item, not a remove and an add.
	c4 := c3.Clone()
	c4.Routes[0].Metric = 9
	if got := config.Lines(config.Items(c3, c4)); len(got) != 1 || got[0] != "route default fd00::fe: metric 0 -> metric 9" {
		t.Errorf("metric diff: got %q", got)
	}
	// A lagg a route names cannot be destroyed from under it.
	c5 := c4.Clone()
	c5.Routes = append(c5.Routes, config.Route{To: netip.MustParsePrefix("10.0.0.0/8"), Interface: "lagg0"})
	c5.Laggs = nil
	if err := c5.Validate(); err == nil || !strings.Contains(err.Error(), `no interface is named "lagg0"`) {
		t.Errorf("route on a destroyed lagg: got %v", err)
	}
}

// TestRouteOnVLAN: a route may name a VLAN interface.
func TestRouteOnVLAN(t *testing.T) {
	src := routeLagg + "\n[[vlan]]\nname = \"vlan5\"\nid = 5\nparent = \"lagg0\"\naddresses = [\"10.5.0.1/24\"]\n\n[[route]]\nto = \"10.50.0.0/16\"\nvia = \"10.5.0.254\"\ninterface = \"vlan5\"\n"
	c, err := config.Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 1 || c.Routes[0].Interface != "vlan5" {
		t.Fatalf("routes: %v", c.Routes)
	}
	if _, err := config.Parse("t.toml", []byte(strings.Replace(src, `interface = "vlan5"`, `interface = "vlan6"`, 1))); err == nil || !strings.Contains(err.Error(), "(interfaces: lagg0, vlan5)") {
		t.Errorf("unknown VLAN: got %v", err)
	}
}

// FuzzParseRoute: any words give a command or an error, never a panic, and
// an accepted add or delete reparses from its String to the same command.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"add default 192.168.1.254", "add -net 10.0.0.0 192.168.1.254 -netmask 255.0.0.0", "delete -inet6 default",
		"add -inet6 2001:db8:: fd00::1 -prefixlen 32 -ifp lagg0 -metric 4", "show -inet", "add -host 10.1.2.3 fe80::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cmd, err := config.ParseRoute(strings.Fields(s))
		if err != nil || cmd.Op == config.RouteShow {
			return
		}
		back, err := config.ParseRoute(strings.Fields(cmd.String()))
		if err != nil || !reflect.DeepEqual(back, cmd) {
			t.Fatalf("%q -> %q -> %+v, %v", s, cmd.String(), back, err)
		}
	})
}
