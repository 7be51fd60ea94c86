package appliance_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
)

// macOf is the MAC of port i's appliance end in the current rig.
func macOf(i int) string {
	return tcpip.LinkAddress([]byte{2, 0, 0, 1, byte(ctlSeq), byte(i)}).String()
}

func wirePort(name string, prio uint16) config.Port {
	return config.Port{Name: name, Kind: "wire", Priority: prio}
}

// TestControlManPageFailover runs lagg(4)'s failover example through the
// control socket and checks the configuration and `ifconfig lagg0`.
func TestControlManPageFailover(t *testing.T) {
	r := newCtlRig(t, "", "failover", "wm0", "wm1")
	r.mustIfconfig(
		"lagg0 create",
		"lagg0 laggproto failover",
		"lagg0 laggport wm0 pri 1000",
		"lagg0 laggport wm1 pri 2000",
		"lagg0 inet 192.168.1.1 netmask 255.255.255.0",
	)
	want := config.NewLagg("lagg0")
	want.Proto = "failover"
	want.Ports = []config.Port{wirePort("wm0", 1000), wirePort("wm1", 2000)}
	want.Addresses = []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}
	if got := r.a.Config().Lagg("lagg0"); got == nil || !reflect.DeepEqual(*got, want) {
		t.Fatalf("running config:\ngot  %+v\nwant %+v", got, want)
	}
	r.waitRunning("lagg0", 10*time.Second)
	checkLines(t, r.status("lagg0", false), []string{
		"lagg0: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500",
		"\tlaggproto failover",
		"\t\tlaggfailover rx-all",
		"\tlaggport:",
		"\t\twm0 pri=1000 flags=0x1c<ACTIVE,COLLECTING,DISTRIBUTING>",
		"\t\twm1 pri=2000 flags=0xc<ACTIVE,COLLECTING>",
		"\taddress: " + macOf(0),
		"\tmedia: Ethernet autoselect",
		"\tstatus: active",
		"\tinet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0",
		"\tinet6 fe80::*", // the link-local address (linklocal.go)
	})
	tr := r.startTransfer()
	tr.WaitMore(t, 64<<10, 30*time.Second)
	checkLines(t, withoutDrops(r.status("lagg0", true)), []string{
		"lagg0: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500",
		"\tlaggproto failover",
		"\t\tlaggfailover rx-all",
		"\t\ttx port=wm0, failovers=0, last failover=0 ms",
		"\tlaggport:",
		"\t\twm0 pri=1000 flags=0x1c<ACTIVE,COLLECTING,DISTRIBUTING>",
		"\t\t\tlink up, speed 1000 Mbit/s, mtu 1500, address " + macOf(0),
		"\t\t\tinput: *",
		"\t\t\toutput: *",
		"\t\twm1 pri=2000 flags=0xc<ACTIVE,COLLECTING>",
		"\t\t\tlink up, speed 1000 Mbit/s, mtu 1500, address " + macOf(1),
		"\t\t\tinput: 0 packets, 0 bytes",
		"\t\t\toutput: 0 packets, 0 bytes",
		"\taddress: " + macOf(0),
		"\tmedia: Ethernet autoselect",
		"\tstatus: active",
		"\tinput: *",
		"\toutput: *",
		"\tinet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0",
		"\tinet6 fe80::*", // the link-local address (linklocal.go)
	})
	tr.Wait(t, time.Minute)
}

// TestControlManPageLACP runs lagg(4)'s lacp example against an LACP peer.
func TestControlManPageLACP(t *testing.T) {
	r := newCtlRig(t, "", "lacp", "wm0", "wm1")
	r.mustIfconfig(
		"lagg0 create",
		"lagg0 laggproto lacp laggport wm0 laggport wm1 192.168.1.1 netmask 255.255.255.0",
	)
	want := config.NewLagg("lagg0")
	want.Proto = "lacp"
	want.Ports = []config.Port{wirePort("wm0", 32768), wirePort("wm1", 32768)}
	want.Addresses = []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}
	if got := r.a.Config().Lagg("lagg0"); got == nil || !reflect.DeepEqual(*got, want) {
		t.Fatalf("running config:\ngot  %+v\nwant %+v", got, want)
	}
	testkit.WaitFor(t, 30*time.Second, "both ports distributing, on both sides", func() bool {
		st := r.a.Lagg("lagg0").Status()
		if !st.Up || len(st.Ports) != 2 {
			return false
		}
		for _, p := range st.Ports {
			if p.Flags != 0x1c || p.LACP == nil || p.LACP.Partner.State&0x20 == 0 {
				return false
			}
		}
		return true
	})
	checkLines(t, r.status("lagg0", false), []string{
		"lagg0: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500",
		"\tlaggproto lacp",
		"\tlaggport:",
		"\t\twm0 pri=32768 flags=0x1c<ACTIVE,COLLECTING,DISTRIBUTING>",
		"\t\twm1 pri=32768 flags=0x1c<ACTIVE,COLLECTING,DISTRIBUTING>",
		"\taddress: " + macOf(0),
		"\tmedia: Ethernet autoselect",
		"\tstatus: active",
		"\tinet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0",
		"\tinet6 fe80::*", // the link-local address (linklocal.go)
	})
	actor := "[8000," + strings.ReplaceAll(strings.ToUpper(macOf(0)), ":", "-") + ","
	peerMAC := "[8000," + strings.ReplaceAll(strings.ToUpper(r.pl.LinkAddress().String()), ":", "-") + ","
	const dist = "0x3d<ACTIVITY,AGGREGATION,SYNC,COLLECTING,DISTRIBUTING>"
	checkLines(t, withoutDrops(r.status("lagg0", true)), []string{
		"lagg0: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500",
		"\tlaggproto lacp",
		"\t\tmax ports=16, flags=0x8<MULTILS>",
		"\t\tmin ports=1, rate=slow, mode=active, fallback=off",
		"\t\tactor=" + actor + "*",
		"\t\tpartner=" + peerMAC + "*",
		"\t\thash=l2,l3,l4",
		"\tlaggport:",
		"\t\twm0 pri=32768 flags=0x1c<ACTIVE,COLLECTING,DISTRIBUTING>",
		"\t\t\tactor: state=" + dist,
		"\t\t\tpartner=" + peerMAC + "*",
		"\t\t\tpartner: port=0001 prio=8000 state=" + dist,
		"\t\t\tmux=DISTRIBUTING rx=CURRENT selected, lacpdu in=*",
		"\t\t\tlink up, speed 1000 Mbit/s, mtu 1500, address " + macOf(0),
		"\t\t\tinput: *",
		"\t\t\toutput: *",
		"\t\twm1 pri=32768 flags=0x1c<ACTIVE,COLLECTING,DISTRIBUTING>",
		"\t\t\tactor: state=" + dist,
		"\t\t\tpartner=" + peerMAC + "*",
		"\t\t\tpartner: port=0002 prio=8000 state=" + dist,
		"\t\t\tmux=DISTRIBUTING rx=CURRENT selected, lacpdu in=*",
		"\t\t\tlink up, speed 1000 Mbit/s, mtu 1500, address " + macOf(1),
		"\t\t\tinput: *",
		"\t\t\toutput: *",
		"\taddress: " + macOf(0),
		"\tmedia: Ethernet autoselect",
		"\tstatus: active",
		"\tinput: *",
		"\toutput: *",
		"\tinet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0",
		"\tinet6 fe80::*", // the link-local address (linklocal.go)
	})
	tr := r.startTransfer()
	tr.WaitMore(t, 64<<10, 30*time.Second)
	// lagglacp on the same line as a change of protocol, then alone.
	r.mustIfconfig("lagg0 lagglacp maxports 1")
	testkit.WaitFor(t, 10*time.Second, "one port standing by", func() bool {
		st := r.a.Lagg("lagg0").Status()
		return st.Up && (st.Ports[0].Flags&0x20 != 0) != (st.Ports[1].Flags&0x20 != 0)
	})
	tr.WaitMore(t, 64<<10, 30*time.Second)
	tr.Wait(t, time.Minute)
	if got := r.a.Config().Lagg("lagg0").LACP.MaxPorts; got != 1 {
		t.Errorf("max ports: got %d, want 1", got)
	}
}

// withoutDrops leaves out the "drops:" lines of verbose status, which come
// and go with timing (frames sent before the link was up).
func withoutDrops(s string) string {
	var keep []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(strings.TrimLeft(l, "\t"), "drops: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// failoverRig is a running failover lagg0 over wm0 (1000) and wm1 (2000),
// with wm2 and wm3 wired but not in the lagg. Its MAC is fixed: a lagg
// that follows its first port's MAC changes it when that port leaves, and
// gVisor (the peer) ignores gratuitous ARP requests, so the peer would
// keep sending to the old MAC until its neighbour entry expires.
func failoverRig(t *testing.T) *ctlRig {
	t.Helper()
	r := newCtlRig(t, failoverTOML, "failover", "wm0", "wm1", "wm2", "wm3")
	r.waitRunning("lagg0", 10*time.Second)
	return r
}

// TestControlErrors checks the message for each bad command and that the
// running configuration, and the traffic, are as before.
func TestControlErrors(t *testing.T) {
	r := failoverRig(t)
	tr := r.startTransfer()
	tests := []struct {
		line, want string
	}{
		{"lagg0 frobnicate", `lagg0: unknown option "frobnicate"`},
		{"lagg0 inet 192.168.1.300", `inet: "192.168.1.300" is not an address`},
		{"lagg0 inet 10.0.0.1 netmask 255.0.255.0", "netmask: 255.0.255.0 is not contiguous"},
		{"lagg0 laggport wm2 pri 70000", "laggport wm2 pri: priority 70000 is out of range 0..65535"},
		{"lagg0 laggportpri wm0 -1", "priority -1 is out of range 0..65535"},
		{"lagg0 laggport nosuch0", "open nosuch0: no such interface"},
		{"lagg0 laggport wm2 pri 5 laggport nosuch0", "open nosuch0: no such interface"},
		{"lagg0 laggproto loadbalance laggport nosuch0", "open nosuch0: no such interface"},
		{"lagg0 lagglacp maxports 2", "lagglacp options need laggproto lacp; lagg0 runs failover"},
		{"lagg0 laggproto lacp laggfailover -rx-all", "laggfailover options need laggproto failover; lagg0 runs lacp"},
		{"lagg7 up", "lagg7: no such lagg"},
		{"lagg0 create", "lagg0 already exists"},
		{"lagg0 -laggport wm2", "wm2 is not a port of lagg0"},
		{"lagg0 laggport wm0", "wm0 is already a port of lagg0"},
		{"lagg0 mtu 10", "MTU 10 is out of range 68..65535"},
		{"lagg0", "no options given"},
	}
	before := r.a.Config()
	ports := r.a.Lagg("lagg0").Ports()
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			err := r.ifconfig(tt.line)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
			if got := r.a.Config(); !reflect.DeepEqual(got, before) {
				t.Errorf("running config changed:\ngot  %+v\nwant %+v", got.Laggs, before.Laggs)
			}
			if got := r.a.Lagg("lagg0").Ports(); !reflect.DeepEqual(got, ports) {
				t.Errorf("lagg ports: got %v, want %v", got, ports)
			}
			if got := r.a.Lagg("lagg0").Config().Proto; got != "failover" {
				t.Errorf("protocol: got %s, want failover", got)
			}
		})
	}
	tr.WaitMore(t, 64<<10, 30*time.Second)
	tr.Wait(t, time.Minute)
	// The port a refused line tried is free and works afterwards.
	r.mustIfconfig("lagg0 laggport wm2 pri 3000")
	if got := r.a.Lagg("lagg0").Ports(); !reflect.DeepEqual(got, []string{"wm0", "wm1", "wm2"}) {
		t.Errorf("after adding wm2: got ports %v, want [wm0 wm1 wm2]", got)
	}
}

// TestControlPortChangesDuringTransfer adds, re-prioritises and removes
// ports, the transmitting one included, while a TCP stream runs.
func TestControlPortChangesDuringTransfer(t *testing.T) {
	r := failoverRig(t)
	tr := r.startTransfer()
	tr.WaitMore(t, 64<<10, 30*time.Second)
	steps := []struct {
		line string
		tx   string // the failover transmit port afterwards
	}{
		{"lagg0 laggport wm2 pri 500", "wm2"},
		{"lagg0 laggportpri wm0 100", "wm0"},
		{"lagg0 -laggport wm0", "wm2"},
		{"lagg0 laggport wm3 pri 10 laggportpri wm1 20", "wm3"},
		{"lagg0 -laggport wm3 -laggport wm2", "wm1"},
		{"lagg0 laggport wm0 pri 1", "wm0"},
	}
	for _, s := range steps {
		t.Logf("ulagg ifconfig %s", s.line)
		r.mustIfconfig(s.line)
		if got := r.a.Lagg("lagg0").Status().TxPort; got != s.tx {
			t.Errorf("after %q: transmit port %q, want %q", s.line, got, s.tx)
		}
		tr.WaitMore(t, 64<<10, 30*time.Second)
	}
	tr.Wait(t, time.Minute)
	want := []config.Port{wirePort("wm1", 20), wirePort("wm0", 1)}
	if got := r.a.Config().Lagg("lagg0").Ports; !reflect.DeepEqual(got, want) {
		t.Errorf("ports: got %+v, want %+v", got, want)
	}
}

// TestControlProtoSwitch changes the protocol of a running lagg under a
// TCP stream.
func TestControlProtoSwitch(t *testing.T) {
	r := failoverRig(t)
	tr := r.startTransfer()
	for _, proto := range []string{"loadbalance", "failover", "loadbalance"} {
		r.mustIfconfig("lagg0 laggproto " + proto)
		if !strings.Contains(r.status("lagg0", false), "\tlaggproto "+proto+"\n") {
			t.Errorf("status after laggproto %s:\n%s", proto, r.status("lagg0", false))
		}
		tr.WaitMore(t, 64<<10, 30*time.Second)
	}
	tr.Wait(t, time.Minute)
	if got := r.a.Lagg("lagg0").Ports(); len(got) != 2 {
		t.Errorf("ports after the switches: got %v, want both kept", got)
	}
}

// TestControlMTU checks that the lagg's MTU reaches every port, also one
// added later, and that the ports get theirs back when they leave.
func TestControlMTU(t *testing.T) {
	r := failoverRig(t)
	r.mustIfconfig("lagg0 mtu 9000")
	for _, name := range []string{"wm0", "wm1"} {
		if got := r.wires[name].A.MTU(); got != 9000 {
			t.Errorf("%s MTU: got %d, want 9000", name, got)
		}
	}
	r.mustIfconfig("lagg0 laggport wm2")
	if got := r.wires["wm2"].A.MTU(); got != 9000 {
		t.Errorf("wm2 MTU after joining: got %d, want 9000", got)
	}
	if out := r.status("lagg0", false); !strings.HasPrefix(out, "lagg0: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 9000\n") {
		t.Errorf("status first line: got %q", strings.SplitN(out, "\n", 2)[0])
	}
	r.mustIfconfig("lagg0 -laggport wm2")
	if got := r.wires["wm2"].A.MTU(); got != 1500 {
		t.Errorf("wm2 MTU after leaving: got %d, want 1500", got)
	}
	if got := r.a.Config().Lagg("lagg0").MTU; got != 9000 {
		t.Errorf("config MTU: got %d, want 9000", got)
	}
}

// TestControlAdminDown checks down/up: the flags, the NIC and traffic.
func TestControlAdminDown(t *testing.T) {
	r := failoverRig(t)
	r.mustIfconfig("lagg0 down")
	if got := strings.SplitN(r.status("lagg0", false), "\n", 2)[0]; got != "lagg0: flags=0x8802<BROADCAST,SIMPLEX,MULTICAST> mtu 1500" {
		t.Errorf("flags when down: got %q", got)
	}
	if r.a.Stack().CheckNIC(r.a.NIC("lagg0")) {
		t.Errorf("NIC still enabled after down")
	}
	if !r.a.Config().Lagg("lagg0").Down {
		t.Errorf("config: down not recorded")
	}
	r.mustIfconfig("lagg0 up")
	if !r.a.Stack().CheckNIC(r.a.NIC("lagg0")) {
		t.Errorf("NIC still disabled after up")
	}
	tr := r.startTransfer()
	tr.WaitMore(t, 16<<10, 30*time.Second)
	tr.Wait(t, time.Minute)
}

// TestControlCreateDestroy checks create with options, -a, -l, --json and
// destroy.
func TestControlCreateDestroy(t *testing.T) {
	r := failoverRig(t)
	r.mustIfconfig("lagg1 create laggproto loadbalance laggport wm2 laggport wm3 inet 10.7.0.1/16 inet6 fd07::1")
	names, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, Names: true})
	if err != nil || names.Output != "lagg0 lagg1\n" {
		t.Errorf("ifconfig -l: got %q, %v; want \"lagg0 lagg1\\n\"", names.Output, err)
	}
	all, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(all.Output, "\nlagg1: flags=") || !strings.HasPrefix(all.Output, "lagg0: flags=") {
		t.Errorf("ifconfig -a: want lagg0 then lagg1, got:\n%s", all.Output)
	}
	if !strings.Contains(all.Output, "\tinet 10.7.0.1/16 broadcast 10.7.255.255 flags 0x0\n\tinet6 fd07::1/64 flags 0x0\n") {
		t.Errorf("ifconfig -a: lagg1's addresses missing:\n%s", all.Output)
	}
	js, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, Lagg: "lagg1", JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []appliance.LaggJSON
	if err := json.Unmarshal([]byte(js.Output), &got); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, js.Output)
	}
	if len(got) != 1 || got[0].Name != "lagg1" || got[0].Proto != "loadbalance" || len(got[0].Ports) != 2 {
		t.Errorf("--json: got %+v, want lagg1 loadbalance with 2 ports", got)
	}
	r.mustIfconfig("lagg1 destroy")
	if r.a.Lagg("lagg1") != nil || r.a.Config().Lagg("lagg1") != nil {
		t.Errorf("lagg1 still there after destroy")
	}
	if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, Lagg: "lagg1"}); err == nil || err.Error() != "lagg1: no such lagg" {
		t.Errorf("status of a destroyed lagg: got %v, want \"lagg1: no such lagg\"", err)
	}
	// Its ports are free again.
	r.mustIfconfig("lagg0 laggport wm2")
}

// TestControlSaveReload saves runtime changes, reloads an edited file,
// and refuses a broken one while the old configuration keeps serving.
func TestControlSaveReload(t *testing.T) {
	r := failoverRig(t)
	r.mustIfconfig("lagg0 laggport wm2 pri 3000 laggfailover -rx-all inet6 fd00::1/64", "lagg0 down", "lagg0 up", "lagg0 mtu 4000")
	if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdSave}); err != nil {
		t.Fatalf("save: %v", err)
	}
	saved, err := config.Load(r.file)
	if err != nil {
		t.Fatalf("the saved file does not load: %v", err)
	}
	if running := r.a.Config(); !reflect.DeepEqual(saved, running) {
		t.Errorf("saved file:\ngot  %+v\nwant %+v", saved, running)
	}
	// An edit to the file, applied by reload.
	edited := saved.Clone()
	edited.Lagg("lagg0").Ports[1].Priority = 10
	edited.Lagg("lagg0").Failover.RxAll = true // the peer sends on wm0, the lagg on wm1 now
	edited.Lagg("lagg0").Down = true
	data, err := config.Marshal(edited)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdReload}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := r.a.Config(); !reflect.DeepEqual(got, edited) {
		t.Errorf("after reload:\ngot  %+v\nwant %+v", got.Laggs, edited.Laggs)
	}
	if r.a.Stack().CheckNIC(r.a.NIC("lagg0")) {
		t.Errorf("reload of down = true left the NIC enabled")
	}
	edited.Lagg("lagg0").Down = false
	data, _ = config.Marshal(edited)
	if err := os.WriteFile(r.file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdReload}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	// A broken file: refused with its line, and nothing changes.
	tr := r.startTransfer()
	before := r.a.Config()
	broken := strings.Replace(string(data), "priority = 10\n", "priority = 70000\n", 1)
	if err := os.WriteFile(r.file, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdReload})
	if err == nil || !strings.Contains(err.Error(), "reload refused") || !strings.Contains(err.Error(), "70000 is out of range 0..65535") {
		t.Errorf("reload of a broken file: got %v, want a refusal naming 70000", err)
	}
	if got := r.a.Config(); !reflect.DeepEqual(got, before) {
		t.Errorf("a refused reload changed the running config")
	}
	tr.WaitMore(t, 64<<10, 30*time.Second)
	tr.Wait(t, time.Minute)
}

// TestControlReloadDiff edits a port's priority in the file under a TCP
// stream: only that port changes; the transmitting port keeps running.
func TestControlReloadDiff(t *testing.T) {
	r := failoverRig(t)
	tr := r.startTransfer()
	tr.WaitMore(t, 64<<10, 30*time.Second)
	st0 := r.a.Lagg("lagg0").Status()
	tx0 := st0.Port("wm0").Counters.TxFrames
	cfg, err := config.Load(r.file)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Lagg("lagg0").Ports[1].Priority = 3000
	data, err := config.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// What SIGHUP does (cmd/ulagg's runtime shares it with the socket).
	if err := r.a.ReloadFile(r.file); err != nil {
		t.Fatalf("reload: %v", err)
	}
	tr.WaitMore(t, 64<<10, 30*time.Second)
	st := r.a.Lagg("lagg0").Status()
	if got := st.Port("wm1").Priority; got != 3000 {
		t.Errorf("wm1 priority: got %d, want 3000", got)
	}
	// A re-created port would have started its counters again.
	if got := st.Port("wm0").Counters.TxFrames; got <= tx0 {
		t.Errorf("wm0 sent %d frames after the reload, had %d before: it was restarted", got, tx0)
	}
	if st.TxPort != "wm0" || st.Failovers != 0 {
		t.Errorf("transmit port %s after %d failovers, want wm0 and none", st.TxPort, st.Failovers)
	}
	tr.Wait(t, time.Minute)
}

func TestControlUnknownCommand(t *testing.T) {
	r := newCtlRig(t, "", "failover")
	for _, tt := range []struct {
		req  appliance.ControlRequest
		want string
	}{
		{appliance.ControlRequest{Cmd: "frob"}, `unknown command "frob"`},
		{appliance.ControlRequest{Cmd: appliance.CmdIfconfig}, "missing interface name"},
		{appliance.ControlRequest{Cmd: appliance.CmdCapture, Lagg: "lagg9"}, "capture: lagg9: no such lagg"},
	} {
		t.Run(fmt.Sprint(tt.req), func(t *testing.T) {
			_, err := appliance.ControlCall(r.sock, tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
