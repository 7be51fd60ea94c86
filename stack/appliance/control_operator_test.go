package appliance_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/stack/appliance"
)

// TestControlPortDisable: laggport IF -active takes a port out of service
// (status <DISABLED>, the failover moves), save writes it, active brings it
// back, a port added -active joins disabled, and a refused line leaves the
// flag as it was.
func TestControlPortDisable(t *testing.T) {
	r := failoverRig(t)
	txPort := func() string { return r.a.Lagg("lagg0").Status().TxPort }
	r.mustIfconfig("lagg0 laggport wm0 -active")
	if got := txPort(); got != "wm1" {
		t.Errorf("wm0 disabled: tx port %s, want wm1", got)
	}
	out := r.status("lagg0", true)
	if !strings.Contains(out, "wm0 pri=1000 flags=0x0 <DISABLED>") || !strings.Contains(out, "disabled by the operator") {
		t.Errorf("status does not show wm0 disabled:\n%s", out)
	}
	if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdSave}); err != nil {
		t.Fatal(err)
	}
	saved, err := config.Load(r.file)
	if err != nil {
		t.Fatal(err)
	}
	if got := saved.Lagg("lagg0").DisabledPorts(); len(got) != 1 || got[0] != "wm0" {
		t.Errorf("saved file: disabled ports %v, want [wm0]", got)
	}
	// Refused as a whole (wm9 has no interface): wm1 stays enabled.
	if err := r.ifconfig("lagg0 laggport wm1 -active laggport wm9"); err == nil {
		t.Fatal("adding a port with no interface was accepted")
	}
	if st := r.a.Lagg("lagg0").Status(); st.Port("wm1") == nil || st.Port("wm1").Disabled {
		t.Error("a refused line left wm1 disabled (or removed it)")
	}
	if got := txPort(); got != "wm1" {
		t.Errorf("after the refused line: tx port %s, want wm1", got)
	}
	r.mustIfconfig("lagg0 laggport wm2 pri 10 -active")
	if st := r.a.Lagg("lagg0").Status(); st.Port("wm2") == nil || !st.Port("wm2").Disabled || st.TxPort != "wm1" {
		t.Errorf("wm2 added -active with the best priority: %+v, tx port %s; want it disabled, tx wm1", st.Port("wm2"), st.TxPort)
	}
	r.mustIfconfig("lagg0 laggport wm0 active")
	if got := txPort(); got != "wm0" {
		t.Errorf("wm0 enabled again: tx port %s, want wm0", got)
	}
	// A reload of the saved file (wm0 disabled, no wm2) puts it back.
	if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdReload, Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := r.a.Lagg("lagg0").DisabledPorts(); len(got) != 1 || got[0] != "wm0" || txPort() != "wm1" {
		t.Errorf("after reloading the saved file: disabled %v, tx %s; want [wm0], wm1", got, txPort())
	}
}

// TestControlHash: `ulagg hash` names the port the lagg's transmitter
// picks, over the socket, for failover and loadbalance, and says so when a
// protocol has no port per flow.
func TestControlHash(t *testing.T) {
	r := failoverRig(t)
	hash := func(lagg string, args ...string) (string, error) {
		resp, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdHash, Lagg: lagg, Args: args})
		if err != nil {
			return "", err
		}
		return resp.Output, nil
	}
	out, err := hash("lagg0", "tcp", "192.168.1.1:1234", "192.168.1.2:80")
	if err != nil || !strings.HasPrefix(out, "tcp 192.168.1.1:1234 -> 192.168.1.2:80: wm0 (hash 0x") {
		t.Errorf("failover: %q, %v; want wm0", out, err)
	}
	r.mustIfconfig("lagg0 laggproto loadbalance")
	// The peer's MAC is learnt once traffic flowed: ask with and without it.
	if err := testkit.Ping(r.peer, netip.MustParseAddr(ctlAddr), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	l := r.a.Lagg("lagg0")
	seen := map[string]bool{}
	for sport := 1000; sport < 1032; sport++ {
		src := fmt.Sprintf("192.168.1.1:%d", sport)
		out, err := hash("lagg0", "udp", src, "192.168.1.2:53")
		if err != nil {
			t.Fatal(err)
		}
		f := lagg.Flow{Proto: 17, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort("192.168.1.2:53"),
			SrcMAC: l.LinkAddress(), DstMAC: r.pl.LinkAddress()}
		frame, err := f.Frame()
		if err != nil {
			t.Fatal(err)
		}
		want, err := l.PortFor(frame)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, ": "+want+" (hash 0x") {
			t.Errorf("udp %s: %q, want port %s", src, out, want)
		}
		seen[want] = true
		withMAC, err := hash("lagg0", "udp", src, "192.168.1.2:53", "dst-mac", r.pl.LinkAddress().String())
		if err != nil || withMAC != out {
			t.Errorf("udp %s with dst-mac: %q, %v; want %q", src, withMAC, err, out)
		}
	}
	if len(seen) != 2 {
		t.Errorf("32 flows on %v: want both ports", seen)
	}
	for _, tc := range []struct {
		lagg string
		args []string
		want string
	}{
		{"lagg9", []string{"tcp", "1.1.1.1:1", "2.2.2.2:2"}, "lagg9: no such lagg"},
		{"lagg0", []string{"icmp", "1.1.1.1:1", "2.2.2.2:2"}, `unknown protocol "icmp"`},
		{"lagg0", []string{"tcp", "1.1.1.1:1", "[fd00::2]:2"}, "not of the same IP version"},
		{"lagg0", []string{"tcp", "1.1.1.1", "2.2.2.2:2"}, "want ADDR:PORT"},
		{"lagg0", []string{"tcp", "1.1.1.1:1", "2.2.2.2:2", "vlan", "4095"}, "want 1..4094"},
		{"lagg0", []string{"tcp", "10.9.9.9:1", "10.9.9.8:2"}, "no neighbour entry"},
	} {
		if out, err := hash(tc.lagg, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("hash %s %v: %q, %v; want an error with %q", tc.lagg, tc.args, out, err, tc.want)
		}
	}
	r.mustIfconfig("lagg0 laggproto roundrobin")
	if _, err := hash("lagg0", "tcp", "192.168.1.1:1", "192.168.1.2:2"); err == nil || !strings.Contains(err.Error(), "no single port per flow: frames take turns over wm0, wm1") {
		t.Errorf("roundrobin: %v, want no single port per flow", err)
	}
}

// TestControlZeroCounters: ifconfig -z shows the counters, then zeroes
// them; a read-only status does not.
func TestControlZeroCounters(t *testing.T) {
	r := failoverRig(t)
	if err := testkit.Ping(r.peer, netip.MustParseAddr(ctlAddr), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	resp, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, Lagg: "lagg0", Verbose: true, Zero: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Output, "\n\tinput: ") || strings.Contains(resp.Output, "\n\tinput: 0 packets") {
		t.Errorf("-z showed counters already zeroed:\n%s", resp.Output)
	}
	st := r.a.Lagg("lagg0").Status()
	if st.Counters.RxFrames > 2 || st.Port("wm0").Counters.TxFrames > 2 {
		t.Errorf("after -z: lagg rx %d, wm0 tx %d frames; want about 0", st.Counters.RxFrames, st.Port("wm0").Counters.TxFrames)
	}
	if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, Lagg: "lagg9", Zero: true}); err == nil {
		t.Error("-z of an unknown lagg: no error")
	}
}

// helperRequestEnv makes the test binary send one control request (JSON)
// when it is run again as another user (TestControlGroupRoles).
const helperRequestEnv = "ULAGG_TEST_HELPER_REQUEST"

// TestControlRoleHelper is not a test: with helperRequestEnv and
// helperSocketEnv set, it sends the request and prints the outcome.
func TestControlRoleHelper(t *testing.T) {
	req, sock := os.Getenv(helperRequestEnv), os.Getenv(helperSocketEnv)
	if req == "" || sock == "" {
		return
	}
	words := strings.Fields(req)
	r := appliance.ControlRequest{Cmd: words[0]}
	if rest := words[1:]; len(rest) > 0 {
		switch r.Cmd {
		case appliance.CmdIfconfig:
			r.Args = rest
		case appliance.CmdHash:
			r.Lagg, r.Args = rest[0], rest[1:]
		case appliance.CmdStatus:
			r.Zero = rest[0] == "-z"
		}
	}
	if _, err := appliance.ControlCall(sock, r); err != nil {
		fmt.Printf("HELPER-ERROR: %v\n", err)
		return
	}
	fmt.Println("HELPER-OK")
}

// TestControlGroupRoles: with a control group, the socket is 0660 in it; a
// member (by a supplementary group, as SO_PEERGROUPS reports) may read but
// not change; anyone else gets nothing.
func TestControlGroupRoles(t *testing.T) {
	dir, bin := otherUserDir(t, "ulagg-roles")
	r := failoverRig(t)
	const group = 4242 // a gid no one has
	sock := filepath.Join(dir, "run", "ulagg.sock")
	srv, err := appliance.ListenControl(r.a, appliance.ControlOptions{Path: sock, Logger: r.log, Group: "4242"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil || st.Mode&0o777 != 0o660 || st.Gid != group {
		t.Errorf("socket: mode %o gid %d (%v), want 0660 in gid %d", st.Mode&0o777, st.Gid, err, group)
	}
	if err := syscall.Stat(filepath.Dir(sock), &st); err != nil || st.Mode&0o777 != 0o750 || st.Gid != group {
		t.Errorf("created socket directory: mode %o gid %d (%v), want 0750 in gid %d", st.Mode&0o777, st.Gid, err, group)
	}
	as := func(cred *syscall.Credential, req string) string {
		cmd := exec.Command(bin, "-test.run=^TestControlRoleHelper$")
		cmd.Env = append(os.Environ(), helperSocketEnv+"="+sock, helperRequestEnv+"="+req)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("helper %+v: %v\n%s", cred, err, out)
		}
		return string(out)
	}
	member := &syscall.Credential{Uid: 4243, Gid: 4243, Groups: []uint32{100, group}}
	stranger := &syscall.Credential{Uid: 4244, Gid: 4244, Groups: []uint32{100}}
	for _, tc := range []struct {
		name string
		cred *syscall.Credential
		req  string
		want string
	}{
		{"member status", member, "status", "HELPER-OK"},
		{"member hash", member, "hash lagg0 tcp 192.168.1.1:1 192.168.1.2:2", "HELPER-OK"},
		{"member ifconfig", member, "ifconfig lagg0 laggport wm0 -active", "members of the control group (gid 4242) may only read (status, monitor, hash, route show); ifconfig needs root or uid 0"},
		{"member -z", member, "status -z", "ifconfig -z needs root"},
		{"member save", member, "save", "save needs root"},
		{"stranger status", stranger, "status", "permission denied"},
	} {
		if got := as(tc.cred, tc.req); !strings.Contains(got, tc.want) {
			t.Errorf("%s: got\n%s\nwant a line containing %q", tc.name, got, tc.want)
		}
	}
	if st := r.a.Lagg("lagg0").Status(); st.Port("wm0").Disabled {
		t.Error("a reader's ifconfig disabled wm0")
	}
	if _, err := appliance.ControlCall(sock, appliance.ControlRequest{Cmd: appliance.CmdIfconfig, Args: []string{"lagg0", "laggport", "wm0", "-active"}}); err != nil {
		t.Errorf("root: %v", err)
	}
	if _, err := appliance.ListenControl(r.a, appliance.ControlOptions{Path: filepath.Join(dir, "x.sock"), Logger: r.log, Group: "no-such-group-h6"}); err == nil {
		t.Error("ListenControl with an unknown group: no error")
	}
}
