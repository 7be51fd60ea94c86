package appliance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	ustack "github.com/ulagg/ulagg/stack"
	"github.com/ulagg/ulagg/stack/appliance"
)

// peerVLAN puts VLAN vid on the rig's peer lagg as NIC nic with addr.
func (r *ctlRig) peerVLAN(nic tcpip.NICID, vid uint16, addr string) *lagg.VLAN {
	r.t.Helper()
	v, err := r.pl.AddVLAN(vid)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := ustack.AddInterface(r.peer, nic, "pv"+addr, v, []netip.Prefix{netip.MustParsePrefix(addr)}); err != nil {
		r.t.Fatal(err)
	}
	return v
}

// reaches reports whether the peer gets a TCP connection to addr:port.
func (r *ctlRig) reaches(addr string, port uint16, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := testkit.GonetDialer(r.peer, netip.AddrPortFrom(netip.MustParseAddr(addr), port))(ctx)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestApplianceVLANs: NetBSD's vlan(4) lines on a running appliance make
// VLAN NICs over lagg0 that the peer reaches on its own VLANs only (TCP
// echo on a service bound to vlan100, ping), that status shows as NetBSD
// does, that follow a new VID, and that go with -vlanif and destroy;
// untagged traffic keeps working on lagg0 throughout.
func TestApplianceVLANs(t *testing.T) {
	r := newCtlRig(t, `[[lagg]]
name = "lagg0"
proto = "failover"
addresses = ["192.168.1.1/24"]
`+wmPortsTOML+`
[[service]]
kind = "tcp-echo"
port = 7
`, "failover", "wm0", "wm1")
	r.waitRunning("lagg0", 5*time.Second)
	r.peerVLAN(2, 100, "10.1.0.2/24")
	r.peerVLAN(3, 300, "10.2.0.2/24")
	r.mustIfconfig(
		"vlan100 create",
		"vlan100 vlan 100 vlanif lagg0",
		"vlan100 inet 10.1.0.1/24",
		"vlan200 create vlan 200 vlanif lagg0 inet 10.2.0.1/24",
	)
	if err := r.ifconfig("vlan7 vlan 7 vlanif lagg0"); err == nil || !strings.Contains(err.Error(), "no such VLAN") {
		t.Errorf("vlan7 before create: got %v, want no such VLAN", err)
	}
	if err := r.ifconfig("vlan0x create"); err == nil {
		t.Errorf("vlan0x create: got no error")
	}

	msg := bytes.Repeat([]byte("over vlan100 "), 500)
	testkit.CheckEcho(t, testkit.GonetDialer(r.peer, netip.MustParseAddrPort("10.1.0.1:7")), msg)
	if err := testkit.Ping(r.peer, netip.MustParseAddr("10.1.0.1"), 5*time.Second); err != nil {
		t.Errorf("ping vlan100: %v", err)
	}
	testkit.CheckEcho(t, testkit.GonetDialer(r.peer, netip.MustParseAddrPort("192.168.1.1:7")), []byte("untagged"))
	// The peer's VLAN 300 shares vlan200's subnet but not its tag.
	if r.reaches("10.2.0.1", 7, 500*time.Millisecond) {
		t.Errorf("the peer's VLAN 300 reached vlan200")
	}

	out := r.status("vlan100", false)
	checkLines(t, out, []string{
		"vlan100: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500",
		"\tvlan: 100 parent interface: lagg0",
		"\taddress: *",
		"\tstatus: active",
		"\tinet 10.1.0.1/24 broadcast 10.1.0.255 flags 0x0",
		"\tinet6 fe80::*", // the link-local line (TestJSONStatusVLAN checks it)
	})
	all := r.status("", false)
	if !strings.Contains(all, "lagg0: flags=") || !strings.Contains(all, "\tvlan: 200 parent interface: lagg0") {
		t.Errorf("ifconfig -a lacks lagg0 or vlan200:\n%s", all)
	}
	resp, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, Lagg: "vlan100", JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	var js []appliance.VLANJSON
	if err := json.Unmarshal([]byte(resp.Output), &js); err != nil {
		t.Fatalf("vlan100 JSON: %v\n%s", err, resp.Output)
	}
	if len(js) != 1 || js[0].VLAN.ID != 100 || js[0].VLAN.Parent != "lagg0" || !js[0].Running || len(js[0].Addresses) != 1 || js[0].Addresses[0] != "10.1.0.1/24" || js[0].Counters.RxFrames == 0 {
		t.Errorf("vlan100 JSON: got %+v", js)
	}
	if !strings.Contains(resp.Output, `"rx_frames"`) {
		t.Errorf("JSON keys are not snake_case:\n%s", resp.Output)
	}

	// Down with its lagg.
	r.mustIfconfig("lagg0 down")
	if r.reaches("10.1.0.1", 7, 300*time.Millisecond) {
		t.Errorf("vlan100 answers while lagg0 is down")
	}
	if got := r.status("vlan100", false); !strings.HasPrefix(got, "vlan100: flags=0x8802<BROADCAST,SIMPLEX,MULTICAST>") {
		t.Errorf("vlan100 while lagg0 is down:\n%s", got)
	}
	r.mustIfconfig("lagg0 up")
	r.waitRunning("lagg0", 5*time.Second)
	if !r.reaches("10.1.0.1", 7, 5*time.Second) {
		t.Errorf("vlan100 unreachable after lagg0 up")
	}

	m, err := appliance.ListenMetrics(r.a, "127.0.0.1:0", r.log)
	if err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, m)
	m.Close()
	if got := value(t, fams, "ulagg_vlan_rx_frames_total", "vlan=vlan100", "lagg=lagg0", "vid=100"); got == 0 {
		t.Errorf("ulagg_vlan_rx_frames_total of vlan100: got 0 after the echo")
	}
	if got := value(t, fams, "ulagg_vlan_tx_bytes_total", "vlan=vlan100"); got < float64(len(msg)) {
		t.Errorf("ulagg_vlan_tx_bytes_total of vlan100: got %v, want at least the %d echoed", got, len(msg))
	}

	if err := r.ifconfig("lagg0 destroy"); err == nil || !strings.Contains(err.Error(), "vlan100 is on it") {
		t.Errorf("lagg0 destroy under vlan100: got %v, want a refusal", err)
	}

	// A service bound to vlan100 listens there only.
	cfg := r.a.Config()
	cfg.Services = append(cfg.Services, config.Service{Kind: "tcp-discard", Port: 9, Lagg: "vlan100"})
	if err := r.a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if !r.reaches("10.1.0.1", 9, 5*time.Second) {
		t.Errorf("tcp-discard on vlan100 unreachable")
	}
	if r.reaches("192.168.1.1", 9, 500*time.Millisecond) {
		t.Errorf("tcp-discard bound to vlan100 answered on lagg0")
	}

	// A new VID: a new NIC, the addresses and the bound service follow.
	r.mustIfconfig("vlan100 vlan 101 vlanif lagg0")
	if r.reaches("10.1.0.1", 9, 500*time.Millisecond) {
		t.Errorf("vlan100 still answers on VID 100 after vlan 101")
	}
	if err := r.peer.RemoveNIC(2); err != nil {
		t.Fatal(err)
	}
	r.peerVLAN(4, 101, "10.1.0.2/24")
	if !r.reaches("10.1.0.1", 9, 5*time.Second) || !r.reaches("10.1.0.1", 7, 5*time.Second) {
		t.Errorf("vlan100 on VID 101: its services unreachable")
	}

	cfg = r.a.Config()
	cfg.Services = cfg.Services[:1]
	if err := r.a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	r.mustIfconfig("vlan100 -vlanif")
	if r.reaches("10.1.0.1", 7, 500*time.Millisecond) {
		t.Errorf("vlan100 answers after -vlanif")
	}
	if got := r.status("vlan100", false); !strings.Contains(got, "vlan: <none>") {
		t.Errorf("status after -vlanif:\n%s", got)
	}
	r.mustIfconfig("vlan100 destroy", "vlan200 destroy")
	if got := r.a.Config().VLANs; got != nil {
		t.Errorf("VLANs after destroy: %+v", got)
	}
	if vids := r.a.Lagg("lagg0").VLANs(); len(vids) != 0 {
		t.Errorf("lagg0 still has VLANs %v", vids)
	}
	if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, Lagg: "vlan100"}); err == nil {
		t.Errorf("status of a destroyed vlan100: got no error")
	}
	testkit.CheckEcho(t, testkit.GonetDialer(r.peer, netip.MustParseAddrPort("192.168.1.1:7")), []byte("untagged"))
}
