package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/config"
)

const vlanTOML = `
[[lagg]]
name = "lagg0"
proto = "failover"

[[lagg.port]]
name = "wm0"

[[vlan]]
name = "vlan100"
id = 100
parent = "lagg0"
addresses = ["10.1.0.2/24", "2001:db8:100::2/64"]

[[vlan]]
name = "vlan7"

[[service]]
kind = "tcp-echo"
port = 7
lagg = "vlan100"
`

func TestVLANParseMarshalRoundTrip(t *testing.T) {
	c, err := config.Parse("t.toml", []byte(vlanTOML))
	if err != nil {
		t.Fatal(err)
	}
	want := []config.VLAN{
		{Name: "vlan100", ID: 100, Parent: "lagg0", Addresses: prefixes("10.1.0.2/24", "2001:db8:100::2/64")},
		{Name: "vlan7"},
	}
	if !reflect.DeepEqual(c.VLANs, want) {
		t.Fatalf("VLANs: got %+v, want %+v", c.VLANs, want)
	}
	if !c.VLANs[0].Attached() || c.VLANs[1].Attached() {
		t.Errorf("Attached: got %v %v, want true false", c.VLANs[0].Attached(), c.VLANs[1].Attached())
	}
	out, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := config.Parse("out.toml", out)
	if err != nil {
		t.Fatalf("re-parse of\n%s: %v", out, err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip differs:\n%s\ngot  %+v\nwant %+v", out, back.VLANs, c.VLANs)
	}
	cl := c.Clone()
	cl.VLANs[0].Addresses[0] = prefixes("10.9.9.9/24")[0]
	if c.VLANs[0].Addresses[0] == cl.VLANs[0].Addresses[0] {
		t.Errorf("Clone shares the VLAN address slice")
	}
}

func TestVLANValidation(t *testing.T) {
	head := "[[lagg]]\nname = \"lagg0\"\n\n"
	tests := []struct {
		name, toml, want string
	}{
		{"bad name", `[[vlan]]
name = "v100"`, `vlan[0].name: "v100" is not a VLAN interface name`},
		{"id out of range", `[[vlan]]
name = "vlan1"
id = 4095
parent = "lagg0"`, "vlan[0].id: 4095 is out of range 1..4094"},
		{"id zero", `[[vlan]]
name = "vlan1"
id = 0
parent = "lagg0"`, "vlan[0].id: 0 is out of range 1..4094"},
		{"parent without id", `[[vlan]]
name = "vlan1"
parent = "lagg0"`, "vlan[0].id: required with a parent"},
		{"id without parent", `[[vlan]]
name = "vlan1"
id = 5`, "vlan[0].parent: id 5 is given without a parent"},
		{"no such parent", `[[vlan]]
name = "vlan1"
id = 5
parent = "lagg9"`, `vlan[0].parent: no lagg is named "lagg9"`},
		{"duplicate id on a parent", `[[vlan]]
name = "vlan1"
id = 5
parent = "lagg0"

[[vlan]]
name = "vlan2"
id = 5
parent = "lagg0"`, "vlan[1].id: VLAN 5 on lagg0 is already vlan[0] (vlan1)"},
		{"duplicate name", `[[vlan]]
name = "vlan1"

[[vlan]]
name = "vlan1"`, `vlan[1].name: vlan "vlan1" is already defined by vlan[0]`},
		{"lagg with a vlan name", `[[lagg]]
name = "vlan3"`, `lagg[1].name: "vlan3" is a VLAN interface name`},
		{"bad address", `[[vlan]]
name = "vlan1"
addresses = ["224.0.0.1/24"]`, "vlan[0].addresses[0]: 224.0.0.1/24 is not a unicast address"},
		{"unknown key", `[[vlan]]
name = "vlan1"
vid = 3`, "vlan[0].vid: unknown key"},
		{"service on a missing vlan", `[[service]]
kind = "tcp-echo"
port = 7
lagg = "vlan5"`, `service[0].lagg: no vlan is named "vlan5"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("t.toml", []byte(head+tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestIfconfigVLAN: NetBSD's vlan(4) lines build the [[vlan]] entry.
func TestIfconfigVLAN(t *testing.T) {
	c := run(t, base(), nil,
		"vlan100 create",
		"vlan100 vlan 100 vlanif lagg0",
		"vlan100 inet 10.1.0.2/24",
		"vlan100 inet6 2001:db8::2",
		"vlan100 10.1.0.3/24 alias",
	)
	want := config.VLAN{Name: "vlan100", ID: 100, Parent: "lagg0", Addresses: prefixes("10.1.0.2/24", "2001:db8::2/64", "10.1.0.3/24")}
	if got := c.VLAN("vlan100"); got == nil || !reflect.DeepEqual(*got, want) {
		t.Fatalf("vlan100: got %+v, want %+v", got, want)
	}
	if c.Lagg("vlan100") != nil {
		t.Errorf("vlan100 create made a lagg")
	}
	c = run(t, c, nil, "vlan100 10.1.0.3 -alias", "vlan100 -vlanif")
	if got := c.VLAN("vlan100"); got.Attached() || len(got.Addresses) != 2 {
		t.Errorf("after -vlanif and -alias: got %+v, want detached with 2 addresses", got)
	}
	c = run(t, c, nil, "vlan100 destroy")
	if c.VLANs != nil {
		t.Errorf("after destroy: VLANs %+v, want none", c.VLANs)
	}
	cmd, err := config.ParseIfconfig(strings.Fields("vlan100 create vlan 100 vlanif lagg0 inet 10.1.0.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cmd.String(), "vlan100 create vlan 100 vlanif lagg0 inet 10.1.0.2/24"; got != want {
		t.Errorf("String: got %q, want %q", got, want)
	}
}

// TestIfconfigCreateNames: create makes laggN and vlanN only (issue #13:
// `vlan0 create` used to make a lagg called vlan0).
func TestIfconfigCreateNames(t *testing.T) {
	c := run(t, config.Default(), nil, "vlan0 create", "lagg3 create")
	if c.Lagg("vlan0") != nil || c.VLAN("vlan0") == nil {
		t.Errorf("vlan0 create: lagg %v, vlan %v; want a VLAN and no lagg", c.Lagg("vlan0"), c.VLAN("vlan0"))
	}
	if c.Lagg("lagg3") == nil {
		t.Errorf("lagg3 create made no lagg")
	}
	for _, line := range []string{"uplink create", "lagg create", "lagg01 create", "eth0 create", "vlan create"} {
		cmd, err := config.ParseIfconfig(strings.Fields(line))
		if err == nil {
			_, err = cmd.Apply(config.Default(), nil)
		}
		if err == nil {
			t.Errorf("%q: got no error", line)
		}
	}
}

func TestIfconfigVLANErrors(t *testing.T) {
	cfg := run(t, base(), nil, "vlan5 create")
	tests := []struct{ line, want string }{
		{"vlan5 vlan 0 vlanif lagg0", "out of range 1..4094"},
		{"vlan5 vlan 4095 vlanif lagg0", "out of range 1..4094"},
		{"vlan5 vlan 5", "needs a parent too"},
		{"vlan5 vlanif lagg0", "needs a VLAN ID too"},
		{"vlan5 vlan 5 vlanif lagg9", "no lagg is named lagg9"},
		{"vlan5 mtu 9000", "MTU is its lagg's"},
		{"vlan5 laggproto lacp", "is a lagg option"},
		{"vlan6 inet 10.0.0.1/24", "no such VLAN"},
		{"vlan5 create", "already exists"},
		{"vlan5 destroy vlan 5", "destroy must be the last option"},
	}
	for _, tc := range tests {
		cmd, err := config.ParseIfconfig(strings.Fields(tc.line))
		if err == nil {
			_, err = cmd.Apply(cfg, nil)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.line, err, tc.want)
		}
	}
	// A lagg with a VLAN on it is not destroyed under it.
	withVLAN := run(t, cfg, nil, "vlan5 vlan 5 vlanif lagg0")
	cmd, _ := config.ParseIfconfig([]string{"lagg0", "destroy"})
	if _, err := cmd.Apply(withVLAN, nil); err == nil || !strings.Contains(err.Error(), "vlan5 is on it") {
		t.Errorf("destroy lagg0 under vlan5: got %v, want a refusal naming vlan5", err)
	}
}

func TestVLANDiffItems(t *testing.T) {
	old := run(t, base(), nil, "vlan100 create vlan 100 vlanif lagg0 inet 10.1.0.2/24", "vlan200 create vlan 200 vlanif lagg0")
	next := run(t, old, nil, "vlan100 inet 10.1.0.9/24", "vlan200 vlan 201 vlanif lagg0", "vlan300 create")
	got := config.Lines(config.Items(old, next))
	want := []string{
		"vlan100: address 10.1.0.2/24 removed",
		"vlan100: address 10.1.0.9/24 added",
		"vlan200: vlan 200 vlanif lagg0 -> vlan 201 vlanif lagg0",
		"vlan300: created (-vlanif)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("items:\ngot  %q\nwant %q", got, want)
	}
	// A reload of old undoes vlan100's new address and vlan300, which
	// ifconfig made: each is reported, the VLAN made with its address.
	made := run(t, next, nil, "vlan300 inet 10.3.0.1/24")
	if got, want := config.Lines(config.Discarded(old, made, old)), []string{
		"vlan100: address 10.1.0.2/24 removed",
		"vlan100: address 10.1.0.9/24 added",
		"vlan200: vlan 200 vlanif lagg0 -> vlan 201 vlanif lagg0",
		"vlan300: created (-vlanif)",
		"vlan300: address 10.3.0.1/24 added",
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("discarded:\ngot  %q\nwant %q", got, want)
	}
	gone := run(t, next, nil, "vlan300 destroy")
	if got := config.Lines(config.Items(next, gone)); !reflect.DeepEqual(got, []string{"vlan300: destroyed"}) {
		t.Errorf("destroy items: got %q", got)
	}
}

// TestVLANExampleFile: testdata/vlan.toml (also a fuzz seed) loads.
func TestVLANExampleFile(t *testing.T) {
	c, err := config.Load("testdata/vlan.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.VLANs) != 3 || !c.VLANs[0].Attached() || c.VLANs[2].Attached() || c.Services[0].Lagg != "vlan100" {
		t.Errorf("testdata/vlan.toml: got VLANs %+v, services %+v", c.VLANs, c.Services)
	}
}
