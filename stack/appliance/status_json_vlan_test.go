package appliance_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
	"github.com/ulagg/ulagg/stack/dhcp"
)

// TestJSONStatusVLAN: a VLAN interface's JSON status (`ulagg ifconfig
// --json vlan100`) and `ifconfig -a --json`, which lists the laggs then
// the VLANs, match status.schema.json and their golden files; the VLAN's
// link-local address and DHCP client are in its JSON and its text.
func TestJSONStatusVLAN(t *testing.T) {
	r := newCtlRig(t, "", "failover", "wm0", "wm1")
	r.mustIfconfig("lagg0 create", "lagg0 laggproto failover laggport wm0 laggport wm1 192.168.1.1/24")
	r.waitRunning("lagg0", 5*time.Second)
	r.peerVLAN(2, 100, "10.1.0.2/24")
	startPeerDHCPOn(t, r.peer, 2, "10.1.0.60", "10.1.0.2")
	r.mustIfconfig("vlan100 create vlan 100 vlanif lagg0 inet 10.1.0.1/24 inet dhcp", "vlan200 create")
	testkit.WaitFor(t, 20*time.Second, "a lease and a link-local address on vlan100", func() bool {
		st := r.a.VLANStatus()[0]
		return st.DHCP != nil && st.DHCP.State == dhcp.Bound && st.LinkLocal.IsValid()
	})
	st := r.a.VLANStatus()[0]

	all := compileSchema(t, "status.schema.json")
	one := compileSchema(t, "status.schema.json#/$defs/vlan")
	vj := r.jsonStatus("vlan100", false)
	validateJSON(t, all, "ifconfig --json vlan100", vj)
	checkGolden(t, "status_vlan", vj)
	var raw []json.RawMessage
	if err := json.Unmarshal(vj, &raw); err != nil || len(raw) != 1 {
		t.Fatalf("ifconfig --json vlan100: %v\n%s", err, vj)
	}
	validateJSON(t, one, "vlan100", raw[0])
	goJSON, err := json.Marshal(st.JSON())
	if err != nil {
		t.Fatal(err)
	}
	validateJSON(t, one, "json.Marshal(VLANStatus.JSON())", goJSON)
	var gots []appliance.VLANJSON
	if err := json.Unmarshal(vj, &gots); err != nil {
		t.Fatal(err)
	}
	got := gots[0]
	wantLL := fmt.Sprintf("%s%%vlan100/64", st.LinkLocal.Addr())
	if got.VLAN != (appliance.VLANTagJSON{ID: 100, Parent: "lagg0"}) || got.LinkLocal != wantLL || got.ScopeID != uint32(st.NIC) || got.ScopeID == 0 ||
		got.DHCP == nil || got.DHCP.State != "bound" || got.DHCP.Address != "10.1.0.60/24" || got.Flags.Value != 0x8843 {
		t.Errorf("vlan100 JSON: got %+v, want vlan 100 on lagg0, link_local %s scope_id %d, a bound dhcp 10.1.0.60/24, flags 0x8843", got, wantLL, st.NIC)
	}

	// -a: lagg0, then vlan100, then vlan200 (configured, not running).
	aj := r.jsonStatus("", false)
	validateJSON(t, all, "ifconfig -a --json", aj)
	validateJSON(t, all, "ifconfig -a --json -v", r.jsonStatus("", true))
	checkGolden(t, "status_all", aj)
	var js []map[string]json.RawMessage
	if err := json.Unmarshal(aj, &js); err != nil || len(js) != 3 {
		t.Fatalf("ifconfig -a --json: %d interfaces (%v), want lagg0, vlan100, vlan200:\n%s", len(js), err, aj)
	}
	for i, w := range []struct{ name, key string }{{"lagg0", "proto"}, {"vlan100", "vlan"}, {"vlan200", "vlan"}} {
		if string(js[i]["name"]) != `"`+w.name+`"` || js[i][w.key] == nil {
			t.Errorf("ifconfig -a --json [%d]: got name %s, want %s with %q", i, js[i]["name"], w.name, w.key)
		}
	}
	var tag appliance.VLANTagJSON
	if err := json.Unmarshal(js[2]["vlan"], &tag); err != nil || string(js[2]["running"]) != "false" || tag != (appliance.VLANTagJSON{}) {
		t.Errorf("vlan200: got running %s vlan %s (%v), want a configured-only VLAN", js[2]["running"], js[2]["vlan"], err)
	}

	// The text has the link-local line, as a lagg's, and the DHCP line.
	text := r.status("vlan100", false)
	for _, w := range []string{
		fmt.Sprintf("\tinet6 %s%%vlan100 prefixlen 64 scopeid 0x%x\n", st.LinkLocal.Addr(), st.NIC),
		"\tdhcp: bound 10.1.0.60/24 from 10.1.0.2",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("ifconfig vlan100 lacks %q:\n%s", w, text)
		}
	}
}

// TestJSONRoutes: `ulagg route show --json` matches route.schema.json and
// its golden file, installed and waiting routes alike, and the schema
// refuses what it does not describe.
func TestJSONRoutes(t *testing.T) {
	r := newCtlRig(t, routeRigTOML, "failover", "wm0", "wm1")
	r.waitRunning("lagg0", 10*time.Second)
	r.mustRoute("add default 192.168.1.254")
	r.mustRoute("add -inet6 default fd00::fe")
	if _, err := r.routeCall(false, "add -net 10.8.0.0/16 10.99.0.1"); err != nil { // waits for its gateway
		t.Fatal(err)
	}
	s := compileSchema(t, "route.schema.json")
	out, err := r.routeCall(true, "show")
	if err != nil {
		t.Fatal(err)
	}
	validateJSON(t, s, "route show --json", []byte(out))
	checkGolden(t, "routes", []byte(out))
	var rs []appliance.RouteJSON
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatal(err)
	}
	seen := map[string]appliance.RouteJSON{}
	for _, rt := range rs {
		seen[rt.Destination+" "+rt.Gateway] = rt
	}
	if w := seen["10.8.0.0/16 10.99.0.1"]; w.Installed || w.Interface != "" || w.Origin != "static" || w.Flags != "GS" {
		t.Errorf("waiting route: got %+v, want not installed, no interface, static, flags GS", w)
	}
	if d := seen["::/0 fd00::fe"]; !d.Installed || d.Family != "inet6" || d.Interface != "lagg0" || d.Flags != "UGS" {
		t.Errorf("IPv6 default: got %+v, want installed on lagg0, inet6, flags UGS", d)
	}
	v6, err := r.routeCall(true, "show -inet6")
	if err != nil {
		t.Fatal(err)
	}
	validateJSON(t, s, "route show -inet6 --json", []byte(v6))
	if strings.Contains(v6, `"inet"`) {
		t.Errorf("route show -inet6 --json lists IPv4 routes:\n%s", v6)
	}
	// The schema is strict: an unknown origin or key fails.
	for _, bad := range []string{
		strings.Replace(out, `"origin": "static"`, `"origin": "bgp"`, 1),
		strings.Replace(out, `"metric":`, `"weight": 1, "metric":`, 1),
	} {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		if s.Validate(v) == nil {
			t.Errorf("route.schema.json accepts:\n%s", bad)
		}
	}
}
