package appliance

import (
	"strings"
	"testing"
)

func TestRolePolicy(t *testing.T) {
	const self, group = 990, 991
	withGroup := rolePolicy{self: self, group: group}
	noGroup := rolePolicy{self: self, group: -1}
	for _, tc := range []struct {
		name string
		p    rolePolicy
		c    peerCred
		want role
	}{
		{"root", withGroup, peerCred{uid: 0, gid: 0}, roleAdmin},
		{"owner", withGroup, peerCred{uid: self, gid: 5}, roleAdmin},
		{"primary group", withGroup, peerCred{uid: 1000, gid: group}, roleReader},
		{"supplementary group", withGroup, peerCred{uid: 1000, gid: 1000, groups: []uint32{27, group}}, roleReader},
		{"stranger", withGroup, peerCred{uid: 1000, gid: 1000, groups: []uint32{27}}, roleNone},
		{"group member, no group configured", noGroup, peerCred{uid: 1000, gid: group}, roleNone},
		{"owner, no group configured", noGroup, peerCred{uid: self}, roleAdmin},
	} {
		if got := tc.p.roleOf(tc.c); got != tc.want {
			t.Errorf("%s: role %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRoleAllows(t *testing.T) {
	for _, tc := range []struct {
		req    ControlRequest
		reader bool // what a reader may do; an admin may do everything, none nothing
	}{
		{ControlRequest{Cmd: CmdStatus}, true},
		{ControlRequest{Cmd: CmdStatus, Verbose: true, JSON: true}, true},
		{ControlRequest{Cmd: CmdStatus, Zero: true}, false},
		{ControlRequest{Cmd: CmdHash, Args: []string{"tcp", "1.1.1.1:1", "2.2.2.2:2"}}, true},
		{ControlRequest{Cmd: CmdMonitor}, true},
		{ControlRequest{Cmd: CmdRoute, Args: []string{"show"}}, true},
		{ControlRequest{Cmd: CmdRoute, Args: []string{"add", "default", "10.0.0.1"}}, false},
		{ControlRequest{Cmd: CmdRoute}, false},
		{ControlRequest{Cmd: CmdIfconfig, Args: []string{"lagg0", "up"}}, false},
		{ControlRequest{Cmd: CmdSave}, false},
		{ControlRequest{Cmd: CmdReload, DryRun: true}, false},
		{ControlRequest{Cmd: CmdCapture}, false},
		{ControlRequest{Cmd: "nonsense"}, false},
	} {
		if got := roleReader.allows(tc.req); got != tc.reader {
			t.Errorf("reader, %+v: allowed %v, want %v", tc.req, got, tc.reader)
		}
		if !roleAdmin.allows(tc.req) {
			t.Errorf("admin, %+v: refused", tc.req)
		}
		if roleNone.allows(tc.req) {
			t.Errorf("none, %+v: allowed", tc.req)
		}
	}
	p := rolePolicy{self: 990, group: 991}
	if err := p.refusal(roleReader, ControlRequest{Cmd: CmdStatus, Zero: true}, "/s"); !strings.Contains(err.Error(), "ifconfig -z needs root or uid 990") {
		t.Errorf("reader refusal: %v", err)
	}
	if err := p.refusal(roleNone, ControlRequest{}, "/s"); !strings.Contains(err.Error(), "only uid 990 (the owner of the ulagg process) and root may use /s; members of gid 991 may read") {
		t.Errorf("stranger refusal: %v", err)
	}
}

func TestLookupGroup(t *testing.T) {
	if g, err := lookupGroup("root"); err != nil || g != 0 {
		t.Errorf("root: %d, %v", g, err)
	}
	if g, err := lookupGroup("4242"); err != nil || g != 4242 {
		t.Errorf("4242: %d, %v", g, err)
	}
	if _, err := lookupGroup("no-such-group-h6"); err == nil {
		t.Error("an unknown group resolved")
	}
}
