package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
)

// Link monitor tests (lagg/monitor.go): silent loss with carrier up, made
// by an OpenFlow rule on the switch that drops what one lagg port sends
// (in_port=MEMBER,actions=drop). The switch is the OVS topology of
// ovs_fixture_test.go with its bond taken apart: every member is a plain
// port of a learning switch, as a failover or loadbalance lagg expects.
// The ARP target is the kernel host behind the switch.

const monTestInterval = 100 * time.Millisecond

// ovsPlainSwitch is the OVS topology with n independent switch ports.
func ovsPlainSwitch(t *testing.T, n int) *ovsSwitch {
	t.Helper()
	o := ovsStartWith(t, ovsConfig{members: n, lacp: "off", mode: "active-backup"})
	o.vsctl(t, "del-port", ovsBridge, o.bond)
	for _, m := range o.member {
		o.vsctl(t, "add-port", ovsBridge, m) // separate calls: quirk 3 of the notes
	}
	return o
}

// ovsDrop installs (on) or removes the rule that drops everything member
// sends into the switch; the carrier stays up.
func (o *ovsSwitch) ovsDrop(t *testing.T, member string, on bool) {
	t.Helper()
	rule := "priority=100,in_port=" + member
	var err error
	if on {
		_, err = o.cmd("ovs-ofctl", "add-flow", ovsBridge, rule+",actions=drop")
	} else {
		_, err = o.cmd("ovs-ofctl", "--strict", "del-flows", ovsBridge, rule)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func monitorLagg(proto string, missed int, ports ...string) config.Lagg {
	lc := laggConfig(proto, ports...)
	lc.Monitor = config.Monitor{ARPTargets: []netip.Addr{hostAddr}, Interval: monTestInterval, MissedMax: missed}
	return lc
}

// monitorAnswered waits until every port of l has had replies since now.
func monitorAnswered(t *testing.T, l *lagg.Lagg) {
	t.Helper()
	base := map[string]uint64{}
	for _, p := range l.Status().Ports {
		if p.Monitor == nil {
			t.Fatalf("%s: no monitor status", p.Name)
		}
		base[p.Name] = p.Monitor.Replies
	}
	testkit.WaitFor(t, 5*time.Second, "every port's probes answered", func() bool {
		for _, p := range l.Status().Ports {
			if p.Monitor == nil || p.Monitor.Replies <= base[p.Name] || !p.Monitor.Up || !p.Active {
				return false
			}
		}
		return true
	})
}

// dataFrames is what a port sent besides monitor probes.
func dataFrames(p *lagg.PortStatus) uint64 { return p.Counters.TxFrames - p.Monitor.Probes }

// TestLinkMonitorOVSFailover: a failover lagg with an ARP monitor (interval
// 100 ms, missed_max 2 and 3) to the kernel host; the switch silently drops what
// the transmitting port sends. Measured over 5 runs: from the drop rule's
// installation to the first frame on the other port (polled every 0.5 ms),
// and the lagg's own clock (first lost interval to first frame). The
// bound is interval × (missed_max + 1). The host's ARP entry for the lagg
// stays at the lagg's MAC: probes come from 0.0.0.0.
func TestLinkMonitorOVSFailover(t *testing.T) {
	for _, missed := range []int{2, 3} {
		t.Run(fmt.Sprintf("missed%d", missed), func(t *testing.T) { monitorOVSFailover(t, missed) })
	}
}

func monitorOVSFailover(t *testing.T, missed int) {
	const runs = 5
	o := ovsPlainSwitch(t, 2)
	ap := startAppliance(t, monitorLagg(config.ProtoFailover, missed, o.ports...), ovsAppOptions(o))
	pingOK(t, o.host, 3)
	monitorAnswered(t, ap.l)
	mac := ap.l.Status().MAC.String()

	bound := monTestInterval * time.Duration(missed+1)
	var drops, selfs []time.Duration
	for run := range runs {
		st := ap.l.Status()
		if st.TxPort != o.ports[0] {
			t.Fatalf("run %d: tx port %q, want %s", run, st.TxPort, o.ports[0])
		}
		base := dataFrames(st.Port(o.ports[1]))
		o.ovsDrop(t, o.member[0], true)
		at := time.Now()
		var first time.Duration
		for first == 0 {
			st := ap.l.Status()
			if dataFrames(st.Port(o.ports[1])) > base {
				first = time.Since(at)
				break
			}
			if time.Since(at) > 5*time.Second {
				o.diag(t, ap.l)
				t.Fatalf("run %d: no frame on %s within 5 s of the drop; status %+v", run, o.ports[1], st.Ports)
			}
			time.Sleep(500 * time.Microsecond)
		}
		st = ap.l.Status()
		p0 := st.Port(o.ports[0])
		if p0.Monitor.Up || !p0.LinkUp || st.TxPort != o.ports[1] {
			t.Errorf("run %d: after the drop: %s monitor %+v link %v, tx port %q; want monitor down, link up, tx %s", run, o.ports[0], *p0.Monitor, p0.LinkUp, st.TxPort, o.ports[1])
		}
		if want := fmt.Sprintf("arp %s unanswered %d×", hostIP, missed); p0.Monitor.Reason != want {
			t.Errorf("run %d: reason %q, want %q", run, p0.Monitor.Reason, want)
		}
		if run == 0 {
			monitorSurfaces(t, ap, o.ports[0], o.ports[1], missed)
		}
		drops, selfs = append(drops, first), append(selfs, st.LastFailover)
		t.Logf("run %d: drop rule to first frame on %s: %v (lagg: first lost interval to first frame %v)", run, o.ports[1], first, st.LastFailover)

		o.ovsDrop(t, o.member[0], false)
		testkit.WaitFor(t, 5*time.Second, "back on port 0", func() bool {
			st := ap.l.Status()
			return st.TxPort == o.ports[0] && st.Port(o.ports[0]).Monitor.Up
		})
		pingOK(t, o.host, 2)
	}
	t.Logf("measure: monitor failover (arp, interval %v, missed_max %d, %d runs): drop rule to first frame on the new port min %v median %v max %v; lagg's first lost interval to first frame min %v median %v max %v (bound %v)",
		monTestInterval, missed, runs, slices.Min(drops), median(drops), slices.Max(drops), slices.Min(selfs), median(selfs), slices.Max(selfs), bound)
	// Scheduling on 2 shared cores adds to the bound; half an interval of slack.
	if m := median(drops); m > bound+monTestInterval/2 {
		t.Errorf("median drop-to-first-frame %v, want within %v (interval × (missed_max+1)) + %v", m, bound, monTestInterval/2)
	}
	if st := ap.l.Status(); st.Port(o.ports[0]).Monitor.Failures != uint64(runs) {
		f := st.Port(o.ports[0]).Monitor.Failures
		t.Errorf("monitor failures of %s: got %d, want %d", o.ports[0], f, runs)
	}

	// No poisoning: the host knows the lagg's address at the lagg's MAC
	// only, never at a port's own MAC.
	out, err := lab.Output("ip", "-n", o.host, "neigh", "show", "dev", ovsHostVeth)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, laggIP+" lladdr "+mac) {
		t.Errorf("host's neighbours: want %s at the lagg's MAC %s:\n%s", laggIP, mac, out)
	}
	for _, p := range ap.l.Status().Ports {
		if pm := p.MAC.String(); pm != mac && strings.Contains(out, pm) {
			t.Errorf("host's neighbours name port %s's own MAC %s (poisoned by a probe):\n%s", p.Name, pm, out)
		}
	}
}

// TestLinkMonitorOVSLoadBalance: a 3-port loadbalance lagg sends 12 verified
// TCP flows to the kernel host; once they run, the switch silently drops
// what one port sends. The monitor takes that port out, its flows move to
// the other two, and every flow arrives intact; the silent port sends no
// data after it is out.
func TestLinkMonitorOVSLoadBalance(t *testing.T) {
	const (
		flows   = 12
		perFlow = 8 << 20
		missed  = 2
	)
	o := ovsPlainSwitch(t, 3)
	ap := startAppliance(t, monitorLagg(config.ProtoLoadBalance, missed, o.ports...), ovsAppOptions(o))
	pingOK(t, o.host, 3)
	monitorAnswered(t, ap.l)

	sink := acceptFlows(t, o.host, flows, 60*time.Second)
	waitSent := sendFlows(ap, sink.port, flows, 5000, perFlow)
	// The busiest port goes silent once a tenth is through.
	testkit.WaitFor(t, 30*time.Second, "a tenth of the flows' bytes received", func() bool { return sink.received.Load() >= flows*perFlow/10 })
	st := ap.l.Status()
	idx := 0
	for i, p := range o.ports {
		if dataFrames(st.Port(p)) > dataFrames(st.Port(o.ports[idx])) {
			idx = i
		}
	}
	silent := o.ports[idx]
	// Under load, with the switch relearning the lagg's MAC on every port,
	// no port may have been taken down yet.
	for _, p := range st.Ports {
		if p.Monitor.Failures != 0 || !p.Monitor.Up {
			t.Errorf("before the drop: %s monitor %+v, want up with no failure", p.Name, *p.Monitor)
		}
	}
	o.ovsDrop(t, o.member[idx], true)
	at := time.Now()
	var out time.Duration
	var after uint64
	testkit.WaitFor(t, 5*time.Second, silent+" out of distribution", func() bool {
		st := ap.l.Status()
		p := st.Port(silent)
		if p.Flags&lagg.PortDistributing != 0 {
			return false
		}
		out, after = time.Since(at), dataFrames(p)
		return true
	})
	waitSent(t)
	sink.finish(t, flows, 5000, perFlow, 60*time.Second)
	end := ap.l.Status()
	for _, p := range end.Ports {
		if want := uint64(0); p.Name != silent && p.Monitor.Failures != want {
			t.Errorf("%s: %d monitor failures, want none (only %s was silenced)", p.Name, p.Monitor.Failures, silent)
		}
	}
	if n := dataFrames(end.Port(silent)) - after; n != 0 {
		t.Errorf("%s sent %d data frames after the monitor took it out, want 0", silent, n)
	}
	var others []string
	for _, p := range o.ports {
		if p != silent {
			others = append(others, fmt.Sprintf("%s %d MiB", p, end.Port(p).Counters.TxBytes>>20))
		}
	}
	t.Logf("measure: monitor loadbalance (arp, interval %v, missed_max %d): 3 ports, %s silenced during %d flows: out of distribution after %v; every flow intact (%d MiB); the others carried %s",
		monTestInterval, missed, silent, flows, out, flows*perFlow>>20, strings.Join(others, ", "))
	if out > monTestInterval*(missed+1)+monTestInterval/2 {
		t.Errorf("out of distribution after %v, want within %v", out, monTestInterval*(missed+1))
	}
}

// monitorSurfaces checks that a monitor-down port shows in the status text,
// the JSON and the metrics.
func monitorSurfaces(t *testing.T, ap *app, down, up string, missed int) {
	t.Helper()
	reason := fmt.Sprintf("arp %s unanswered %d×", hostIP, missed)
	text := ifconfigV(ap.a)
	for _, want := range []string{
		fmt.Sprintf("laggmonitor: arp %s interval 100ms missed %d validate all require any", hostIP, missed),
		down + " pri=1000 flags=0x0 monitor down (" + reason + ")",
		"monitor down (" + reason + "), missed ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ifconfig -v: no %q in:\n%s", want, text)
		}
	}
	b, err := json.Marshal(ap.l.Status())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf(`"monitor":{"arp_targets":["%s"],"ns_targets":[],"interval_ms":100,"missed_max":%d,"validate":"all","require":"any"}`, hostIP, missed),
		`"monitor":{"up":false,"reason":"` + reason + `"`,
		`"monitor":{"up":true,"missed":0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("status JSON: no %s in:\n%s", want, b)
		}
	}
	for _, c := range []struct {
		name, port string
		want       float64
	}{{"ulagg_port_monitor_up", down, 0}, {"ulagg_port_monitor_up", up, 1}, {"ulagg_port_monitor_failures_total", down, 1}} {
		if v, ok := gauge(t, ap.a, c.name, "lagg=lagg0", "port="+c.port); !ok || v != c.want {
			t.Errorf("%s{port=%s}: got %v (present %v), want %v", c.name, c.port, v, ok, c.want)
		}
	}
}

// TestLinkMonitorIfconfig: on a running appliance, `ulagg ifconfig lagg0
// laggmonitor arp HOST interval 100 missed 2` starts the monitor; when the
// host's bridge stops forwarding on the primary port's link (carrier up)
// `ulagg ifconfig lagg0` shows the monitor's line and the port
// monitor-down with its reason, and transmission on the other port; once
// the bridge forwards again the port returns; `save` writes
// [lagg.monitor]; `-laggmonitor` stops it.
func TestLinkMonitorIfconfig(t *testing.T) {
	tp := newIfcTopo(t, 2)
	p := startIfcProc(t, tp)
	wm0, wm1 := tp.ports[0], tp.ports[1]
	ifcManPageFailover(t, p, wm0, wm1)
	p.mustIfconfig(t, "lagg0 laggmonitor arp "+ifcHostIP+" interval 100 missed 2")
	monLine := "\t\tlaggmonitor: arp " + ifcHostIP + " interval 100ms missed 2 validate all require any"
	ifcHasLines(t, "after laggmonitor", p.status(t), monLine)

	// A bridge port in the listening state forwards nothing either way and
	// hands nothing to the host's stack; the carrier stays up.
	h0 := tp.peers[0]
	bridgeState := func(state string) {
		t.Helper()
		if err := lab.Run("ip", "-n", tp.host, "link", "set", "dev", h0, "type", "bridge_slave", "state", state); err != nil {
			t.Fatal(err)
		}
	}
	bridgeState("1") // listening
	reason := "arp " + ifcHostIP + " unanswered 2×"
	var out string
	if !testkit.Poll(3*time.Second, func() bool {
		out = p.status(t, "-v")
		return strings.Contains(out, "monitor down ("+reason+")")
	}) {
		t.Fatalf("no monitor-down port within 3 s of the silent loss:\n%s", out)
	}
	ifcHasLines(t, "after the silent loss", out,
		monLine,
		"\t\t"+wm0+" pri=1000 flags=0x0 monitor down ("+reason+")",
		"\t\t"+wm1+" pri=2000 "+ifcTxFlags,
		"\t\ttx port="+wm1+", *",
	)
	bridgeState("3") // forwarding
	if !testkit.Poll(3*time.Second, func() bool {
		out = p.status(t)
		return strings.Contains(out, "\t\t"+wm0+" pri=1000 "+ifcTxFlags+"\n")
	}) {
		t.Fatalf("%s not back within 3 s of the bridge forwarding again:\n%s", wm0, out)
	}

	if _, errOut, code := p.runEnv(t, []string{"ULAGG_SOCKET=" + p.sock}, "save"); code != 0 {
		t.Fatalf("save: exit %d: %s", code, errOut)
	}
	saved, err := os.ReadFile(p.file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[lagg.monitor]", `arp_targets = ["` + ifcHostIP + `"]`, "interval_ms = 100", "missed_max = 2"} {
		if !strings.Contains(string(saved), want) {
			t.Errorf("saved configuration has no %q:\n%s", want, saved)
		}
	}
	p.mustIfconfig(t, "lagg0 -laggmonitor")
	if out := p.status(t); strings.Contains(out, "laggmonitor") || strings.Contains(out, "monitor down") {
		t.Errorf("after -laggmonitor the status still shows a monitor:\n%s", out)
	}
	p.stop(t)
	tp.checkRestored(t)
}

// TestLinkMonitorOVSNS: neighbour solicitation probes to an IPv6 address of
// the kernel host, from each port's own link-local address, are answered
// through OVS on every port; the silenced port goes monitor-down.
func TestLinkMonitorOVSNS(t *testing.T) {
	const target = "fd00:231::1"
	o := ovsPlainSwitch(t, 2)
	// The lab turns IPv6 off in its namespaces; the host's veth gets it back.
	ovsRun(t, "ip", "netns", "exec", o.host, "sysctl", "-qw", "net.ipv6.conf."+ovsHostVeth+".disable_ipv6=0")
	ovsRun(t, "ip", "-n", o.host, "addr", "add", target+"/64", "dev", ovsHostVeth, "nodad")
	lc := laggConfig(config.ProtoFailover, o.ports...)
	lc.Monitor = config.Monitor{NSTargets: []netip.Addr{netip.MustParseAddr(target)}, Interval: monTestInterval, MissedMax: 2}
	ap := startAppliance(t, lc, ovsAppOptions(o))
	monitorAnswered(t, ap.l)
	o.ovsDrop(t, o.member[1], true)
	reason := "ns " + target + " unanswered 2×"
	testkit.WaitFor(t, 2*time.Second, o.ports[1]+" monitor-down", func() bool {
		st := ap.l.Status()
		return st.Port(o.ports[1]).Monitor.Reason == reason
	})
	if st := ap.l.Status(); !st.Port(o.ports[0]).Monitor.Up || st.TxPort != o.ports[0] {
		t.Errorf("%s: monitor %+v, tx port %q; want up and transmitting", o.ports[0], *st.Port(o.ports[0]).Monitor, st.TxPort)
	}
	o.ovsDrop(t, o.member[1], false)
	testkit.WaitFor(t, 2*time.Second, o.ports[1]+" monitor-up", func() bool {
		st := ap.l.Status()
		return st.Port(o.ports[1]).Monitor.Up
	})
}
