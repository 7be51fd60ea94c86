package appliance_test

import (
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
)

const settingsTOML = `
[[lagg]]
name = "lagg0"
proto = "failover"
addresses = ["10.9.0.1/24"]
[[lagg.port]]
name = "sp0"
kind = "wire"
priority = 1000
[[lagg.port]]
name = "sp1"
kind = "wire"
priority = 2000
`

func parse(t *testing.T, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestCreatedDownStaysDown: a lagg whose file says down = true comes up
// administratively down, without waiting for a later ifconfig or reload.
func TestCreatedDownStaysDown(t *testing.T) {
	b := newBench(t, strings.Replace(settingsTOML, `proto = "failover"`, "proto = \"failover\"\ndown = true", 1), "sp0", "sp1")
	st := b.a.Status()
	if len(st) != 1 || st[0].AdminUp {
		t.Fatalf("status after start: %+v, want lagg0 admin down", st)
	}
	if b.a.Stack().CheckNIC(b.a.NIC("lagg0")) {
		t.Error("lagg0's NIC is enabled; down = true wants it disabled")
	}
	if got := b.a.Config().Lagg("lagg0").Down; !got {
		t.Error("running config says up; want down")
	}
}

// TestReloadRemovingMACAndMTU: dropping mac and mtu from the file returns
// the lagg to the derived values (the first port's), not the old ones.
func TestReloadRemovingMACAndMTU(t *testing.T) {
	withBoth := strings.Replace(settingsTOML, `proto = "failover"`, "proto = \"failover\"\nmtu = 9000\nmac = \"06:00:00:00:00:42\"", 1)
	b := newBench(t, withBoth, "sp0", "sp1")
	l := b.a.Lagg("lagg0")
	if got := l.MTU(); got != 9000 {
		t.Fatalf("MTU: got %d, want 9000", got)
	}
	if got := l.LinkAddress(); got != tcpip.LinkAddress("\x06\x00\x00\x00\x00\x42") {
		t.Fatalf("MAC: got %v, want 06:00:00:00:00:42", got)
	}
	if err := b.a.ReloadConfig(parse(t, settingsTOML)); err != nil {
		t.Fatal(err)
	}
	if got := l.MTU(); got != 1500 {
		t.Errorf("MTU after removing it: got %d, want the first port's 1500", got)
	}
	if got, want := l.LinkAddress(), b.wires["sp0"].A.LinkAddress(); got != want {
		t.Errorf("MAC after removing it: got %v, want the first port's %v", got, want)
	}
	if got := b.wires["sp1"].A.MTU(); got != 1500 {
		t.Errorf("port sp1 MTU: got %d, want 1500", got)
	}
}

// TestReloadRxAllUnderAnotherProtocol: rx_all changed while the lagg runs
// loadbalance takes effect when the lagg switches to failover.
func TestReloadRxAllUnderAnotherProtocol(t *testing.T) {
	b := newBench(t, settingsTOML, "sp0", "sp1")
	lb := strings.Replace(settingsTOML, `proto = "failover"`, `proto = "loadbalance"`, 1)
	lb = strings.Replace(lb, "[[lagg.port]]", "[lagg.failover]\nrx_all = false\n[[lagg.port]]", 1)
	if err := b.a.ReloadConfig(parse(t, lb)); err != nil {
		t.Fatal(err)
	}
	fo := strings.Replace(lb, `proto = "loadbalance"`, `proto = "failover"`, 1)
	if err := b.a.ReloadConfig(parse(t, fo)); err != nil {
		t.Fatal(err)
	}
	st := b.a.Lagg("lagg0").Status()
	if st.Proto != lagg.ProtoFailover || st.Failover == nil || st.Failover.RxAll {
		t.Fatalf("after the switch: proto %s, failover %+v; want failover with rx-all off", st.Proto, st.Failover)
	}
}

// TestReloadRoundRobinStride: the stride reaches the running lagg.
func TestReloadRoundRobinStride(t *testing.T) {
	b := newBench(t, settingsTOML, "sp0", "sp1")
	rr := strings.Replace(settingsTOML, `proto = "failover"`, `proto = "roundrobin"`, 1)
	rr = strings.Replace(rr, "[[lagg.port]]", "[lagg.roundrobin]\nstride = 5\n[[lagg.port]]", 1)
	if err := b.a.ReloadConfig(parse(t, rr)); err != nil {
		t.Fatal(err)
	}
	c := b.a.Lagg("lagg0").Config()
	if c.Proto != lagg.ProtoRoundRobin || c.RoundRobin.Stride != 5 {
		t.Errorf("lagg settings: proto %s stride %d, want roundrobin 5", c.Proto, c.RoundRobin.Stride)
	}
}
