package config_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/config"
)

func TestDHCPAddressWord(t *testing.T) {
	c, err := config.Parse("t.toml", []byte(`
[[lagg]]
name = "lagg0"
addresses = ["dhcp", "192.0.2.1/24", "2001:db8::1/64"]
`))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Lagg("lagg0")
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")}
	if !l.DHCP || !slices.Equal(l.Addresses, want) {
		t.Fatalf("got DHCP %v addresses %v, want true %v", l.DHCP, l.Addresses, want)
	}
	out, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `addresses = ["dhcp", "192.0.2.1/24", "2001:db8::1/64"]`) {
		t.Errorf("marshalled:\n%s\nwant the dhcp word first in addresses", out)
	}
	back, err := config.Parse("back.toml", out)
	if err != nil {
		t.Fatal(err)
	}
	if bl := back.Lagg("lagg0"); !bl.DHCP || !slices.Equal(bl.Addresses, want) {
		t.Errorf("read back: got DHCP %v addresses %v", bl.DHCP, bl.Addresses)
	}
	// dhcp alone.
	c, err = config.Parse("t.toml", []byte("[[lagg]]\nname = \"lagg0\"\naddresses = [\"dhcp\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Lagg("lagg0"); !l.DHCP || l.Addresses != nil {
		t.Errorf("dhcp alone: got DHCP %v addresses %#v, want true nil", l.DHCP, l.Addresses)
	}
}

func TestDHCPAddressWordErrors(t *testing.T) {
	for _, tc := range []struct{ name, addrs, want string }{
		{"twice", `["dhcp", "DHCP"]`, `"DHCP" is given twice`},
		{"dhcp6", `["dhcp6"]`, "DHCPv6 is not supported"},
		{"slaac twice", `["slaac", "SLAAC"]`, `"SLAAC" is given twice`},
		{"typo", `["dhpc"]`, "is not an address/prefix-length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("t.toml", []byte("[[lagg]]\nname = \"lagg0\"\naddresses = "+tc.addrs+"\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDHCPDiff(t *testing.T) {
	old, err := config.Parse("a", []byte("[[lagg]]\nname = \"lagg0\"\naddresses = [\"192.0.2.1/24\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	next := old.Clone()
	next.Laggs[0].DHCP = true
	var got []string
	for _, ch := range config.Diff(old, next) {
		for _, it := range ch.Items {
			got = append(got, it.String())
		}
	}
	if !slices.Equal(got, []string{"lagg0: dhcp off -> on"}) {
		t.Errorf("diff: got %q, want [lagg0: dhcp off -> on]", got)
	}
}

func TestDHCPIfconfig(t *testing.T) {
	base, err := config.Parse("a", []byte("[[lagg]]\nname = \"lagg0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want bool
		str  string
	}{
		{[]string{"lagg0", "inet", "dhcp"}, true, "lagg0 inet dhcp"},
		{[]string{"lagg0", "dhcp"}, true, "lagg0 inet dhcp"},
		{[]string{"lagg0", "inet", "dhcp", "inet", "-dhcp"}, false, "lagg0 inet dhcp inet -dhcp"},
	} {
		cmd, err := config.ParseIfconfig(tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if cmd.String() != tc.str {
			t.Errorf("%q: String() = %q, want %q", tc.args, cmd.String(), tc.str)
		}
		next, err := cmd.Apply(base, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got := next.Lagg("lagg0").DHCP; got != tc.want {
			t.Errorf("%q: DHCP = %v, want %v", tc.args, got, tc.want)
		}
	}
	if _, err := config.ParseIfconfig([]string{"lagg0", "inet6", "dhcp"}); err == nil {
		t.Error("lagg0 inet6 dhcp: accepted, want an address error")
	}
}

func TestDHCPOnVLAN(t *testing.T) {
	c, err := config.Parse("t.toml", []byte(`
[[lagg]]
name = "lagg0"

[[vlan]]
name = "vlan5"
id = 5
parent = "lagg0"
addresses = ["10.5.0.1/24", "dhcp"]
`))
	if err != nil {
		t.Fatal(err)
	}
	v := c.VLAN("vlan5")
	if !v.DHCP || !slices.Equal(v.Addresses, []netip.Prefix{netip.MustParsePrefix("10.5.0.1/24")}) {
		t.Fatalf("got DHCP %v addresses %v", v.DHCP, v.Addresses)
	}
	out, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `addresses = ["dhcp", "10.5.0.1/24"]`) {
		t.Errorf("marshalled:\n%s\nwant the dhcp word in the VLAN's addresses", out)
	}
	cmd, err := config.ParseIfconfig([]string{"vlan5", "inet", "-dhcp"})
	if err != nil {
		t.Fatal(err)
	}
	next, err := cmd.Apply(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.VLAN("vlan5").DHCP {
		t.Error("vlan5 inet -dhcp left DHCP on")
	}
	var items []string
	for _, it := range config.Items(c, next) {
		items = append(items, it.String())
	}
	if !slices.Contains(items, "vlan5: dhcp on -> off") {
		t.Errorf("items %q, want vlan5: dhcp on -> off", items)
	}
}

func TestSLAACWord(t *testing.T) {
	c, err := config.Parse("t.toml", []byte("[[lagg]]\nname = \"lagg0\"\naddresses = [\"slaac\", \"dhcp\", \"192.0.2.1/24\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Lagg("lagg0")
	if !l.SLAAC || !l.DHCP || len(l.Addresses) != 1 {
		t.Fatalf("got SLAAC %v DHCP %v addresses %v", l.SLAAC, l.DHCP, l.Addresses)
	}
	out, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `addresses = ["dhcp", "slaac", "192.0.2.1/24"]`) {
		t.Errorf("marshalled:\n%s", out)
	}
	if _, err := config.Parse("v.toml", []byte("[[lagg]]\nname = \"lagg0\"\n[[vlan]]\nname = \"vlan5\"\naddresses = [\"slaac\"]\n")); err == nil || !strings.Contains(err.Error(), "not supported here") {
		t.Errorf("slaac on a VLAN: got %v, want a refusal", err)
	}
	cmd, err := config.ParseIfconfig([]string{"lagg0", "inet6", "-slaac"})
	if err != nil {
		t.Fatal(err)
	}
	if cmd.String() != "lagg0 inet6 -slaac" {
		t.Errorf("String() = %q", cmd.String())
	}
	next, err := cmd.Apply(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.Lagg("lagg0").SLAAC {
		t.Error("inet6 -slaac left SLAAC on")
	}
	var items []string
	for _, it := range config.Items(c, next) {
		items = append(items, it.String())
	}
	if !slices.Equal(items, []string{"lagg0: slaac on -> off"}) {
		t.Errorf("items %q, want [lagg0: slaac on -> off]", items)
	}
	if _, err := config.ParseIfconfig([]string{"lagg0", "inet", "slaac"}); err == nil {
		t.Error("inet slaac accepted; want an address error (slaac is inet6's)")
	}
}
