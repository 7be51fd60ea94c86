package integration

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/stack/appliance"
)

// What a remote partner must not be able to do to an lacp lagg ("trust
// nothing from the wire"), against Open vSwitch and the kernel.

// gauge returns the value of metric name with the lagg (and port) labels
// from the appliance's collector, and whether it exists.
func gauge(t *testing.T, a *appliance.Appliance, name string, labels ...string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(appliance.NewCollector(a))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, want := range labels {
				k, v, _ := strings.Cut(want, "=")
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == k && lp.GetValue() == v
				}
				if !found {
					continue metric
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// ifconfigV is what `ulagg ifconfig -v lagg0` prints.
func ifconfigV(a *appliance.Appliance) string {
	var b strings.Builder
	cfg := a.Config()
	for _, st := range a.Status() {
		for i := range cfg.Laggs {
			if cfg.Laggs[i].Name == st.Name {
				appliance.FormatStatus(&b, st, &cfg.Laggs[i], appliance.FormatOptions{Verbose: true})
			}
		}
	}
	return b.String()
}

// TestOVSLACPRogueLink: ulagg aggregates 2 links with an OVS LACP bond; a
// third port of the lagg is cabled to another OVS port running LACP with
// system priority 1 and its own system ID (a rogue or miscabled partner).
// Before, the lagg moved to the rogue's one-link aggregator (NetBSD: lowest
// partner system priority wins): the bond's members went out of sync and
// the host behind OVS lost its pings. Now (select stable) the bond's
// aggregate keeps the lagg: no ping is lost while the rogue comes up, no
// data frame goes to it, and the alarm shows in the log (once), in
// `ifconfig -v`, in JSON and in the metrics.
func TestOVSLACPRogueLink(t *testing.T) {
	o := ovsStart(t, 2, "fast")
	rogue, rogueMember := o.spare(t)
	lc := laggConfig(config.ProtoLACP, append(append([]string{}, o.ports...), rogue)...)
	lc.LACP.Rate = "fast"
	start := time.Now()
	ap := startAppliance(t, lc, ovsAppOptions(o))
	ulagg, sw := ovsConverge(t, o, ap.l, start, 10*time.Second)
	t.Logf("measure: ovs lacp 2 ports (+1 spare): all distributing after ulagg %v, ovs %v", ulagg, sw)
	pingOK(t, o.host, 3)

	// Pings from the host run across the rogue's arrival.
	type result struct {
		r   lab.PingResult
		err error
	}
	done := make(chan result, 1)
	const pings = 150
	go func() {
		r, err := lab.Ping(o.host, laggAddr, pings, 20*time.Millisecond, 500*time.Millisecond)
		done <- result{r, err}
	}()
	time.Sleep(500 * time.Millisecond)
	added := time.Now()
	o.addLACPPort(t, rogueMember, 1, "02:00:00:00:0e:01")
	testkit.WaitFor(t, 5*time.Second, "the rogue's LACPDUs heard", func() bool {
		st := ap.l.Status()
		ps := st.Port(rogue)
		return ps != nil && ps.LACP.Rx == "CURRENT"
	})
	heard := time.Since(added)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	lost := res.r.Sent - res.r.Received
	t.Logf("measure: ovs lacp rogue port (system priority 1) heard %v after add-port; host pings across it: %d of %d lost (%.0f%%)",
		heard.Round(time.Millisecond), lost, res.r.Sent, 100*float64(lost)/float64(res.r.Sent))
	if lost > 0 {
		o.diag(t, ap.l)
		t.Errorf("%d of %d pings lost while the rogue link came up, want 0", lost, res.r.Sent)
	}
	st := ap.l.Status()
	if ps := st.Port(rogue); ps.Flags&(lagg.PortDistributing|lagg.PortCollecting) != 0 || ovsDataFrames(ps) != 0 {
		t.Errorf("rogue port: flags %v, %d data frames sent; want idle", ps.Flags, ovsDataFrames(ps))
	}
	if ovsDistributing(ap.l) != 2 || !o.allDistributing(st.MAC.String()) {
		t.Errorf("the bond's aggregate: %d distributing on ulagg, ovs all distributing %v", ovsDistributing(ap.l), o.allDistributing(st.MAC.String()))
	}
	if st.LACP == nil || !st.LACP.PartnerMismatch || st.LACP.PartnerSystems != 2 {
		t.Fatalf("LACP status %+v: want the partner mismatch alarm with 2 systems", st.LACP)
	}
	if got := net.HardwareAddr(st.LACP.Partner.System[:]).String(); got == "02:00:00:00:0e:01" {
		t.Errorf("the active partner is the rogue")
	}
	if out, err := o.appctl("lacp/show", rogueMember); err == nil {
		if strings.Contains(out, "may_enable: true") {
			t.Errorf("OVS may enable the rogue link:\n%s", out)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := ap.log.count("different partner systems"); n != 1 {
		t.Errorf("%d alarm log lines, want 1:\n%s", n, ap.log.tail(4<<10))
	}
	v := ifconfigV(ap.a)
	if !strings.Contains(v, "\t\talarm: ports see 2 partner systems") {
		t.Errorf("ifconfig -v shows no alarm:\n%s", v)
	}
	js, err := json.Marshal(appliance.StatusJSON(ap.a.Status()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"partner_mismatch":true`) || !strings.Contains(string(js), `"partner_systems":2`) {
		t.Errorf("JSON status lacks the alarm: %s", js)
	}
	if g, ok := gauge(t, ap.a, "ulagg_lacp_partner_mismatch", "lagg=lagg0"); !ok || g != 1 {
		t.Errorf("metric ulagg_lacp_partner_mismatch: %v (found %v), want 1", g, ok)
	}
	if g, ok := gauge(t, ap.a, "ulagg_lacp_partner_systems", "lagg=lagg0"); !ok || g != 2 {
		t.Errorf("metric ulagg_lacp_partner_systems: %v (found %v), want 2", g, ok)
	}
	ovsEchoOK(t, o, ap.l, 4<<20)
}

// ovsEchoOK echoes size bytes from the host through OVS to the lagg's
// tcp-echo service with the window bounded as ovsEchoWithPull does (gVisor
// TCP stalls after a burst of loss otherwise, see ovsEchoWindow), and logs
// the switch's and the lagg's counters if it fails.
func ovsEchoOK(t *testing.T, o *ovsSwitch, l *lagg.Lagg, size int64) {
	t.Helper()
	c, err := lab.Dial(o.host, "tcp4", net.JoinHostPort(laggIP, fmt.Sprint(echoPort)))
	if err != nil {
		t.Fatalf("dial tcp-echo: %v", err)
	}
	e := testkit.StartEcho(t, c, testkit.TransferOptions{Name: "echo through OVS", Seed: uint64(size), Size: size, Window: ovsEchoWindow})
	select {
	case <-e.Done():
	case <-time.After(time.Minute):
	}
	if _, err := e.Result(); err != nil {
		o.diag(t, l)
		t.Fatalf("echo of %d bytes through OVS: %d back: %v", size, e.Received(), err)
	}
}

// TestOVSLACPFallback: ulagg with lacp fallback against an OVS bond without
// LACP (lacp=off), active-backup and balance-slb, with OVS's active member
// each of the two ports in turn. Before, the lagg fell back to its best
// port alone; whenever OVS's active member was the other one, every frame
// was lost (3 of 8 runs lost 100%). Now the lagg collects on both ports and
// transmits where OVS's traffic arrives: pings and an echo cross in every
// run, and when OVS moves its active member the lagg follows.
func TestOVSLACPFallback(t *testing.T) {
	for _, mode := range []string{"active-backup", "balance-slb"} {
		for active := range 2 {
			t.Run(fmt.Sprintf("%s/active=%d", mode, active), func(t *testing.T) {
				o := ovsStartWith(t, ovsConfig{members: 2, lacp: "off", mode: mode, rebalanceNever: true})
				o.setActiveMember(t, o.member[active])
				lc := laggConfig(config.ProtoLACP, o.ports...)
				lc.LACP.Rate = "fast"
				lc.LACP.Fallback = true
				start := time.Now()
				ap := startAppliance(t, lc, ovsAppOptions(o))
				t.Logf("measure: ovs %s lacp=off: fallback up %v after the appliance start; OVS active member %s", mode, time.Since(start).Round(time.Millisecond), o.activeMember())
				st := ap.l.Status()
				for _, ps := range st.Ports {
					if ps.Flags&lagg.PortCollecting == 0 || !ps.LACP.Fallback {
						t.Errorf("%s: flags %v, fallback %v; want COLLECTING in fallback", ps.Name, ps.Flags, ps.LACP.Fallback)
					}
				}
				r, err := lab.Ping(o.host, laggAddr, 50, 20*time.Millisecond, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("measure: ovs %s lacp=off, active member %d: host pings %d of %d lost", mode, active, r.Sent-r.Received, r.Sent)
				if r.Received < r.Sent {
					o.diag(t, ap.l)
					t.Fatalf("%d of %d pings lost, want 0", r.Sent-r.Received, r.Sent)
				}
				if mode == "active-backup" {
					if st := ap.l.Status(); st.Port(o.ports[active]).Flags&lagg.PortDistributing == 0 {
						t.Errorf("ulagg transmits on %v, want %s (OVS's active member)", st.Ports, o.ports[active])
					}
				}
				ovsEchoOK(t, o, ap.l, 4<<20)

				// OVS moves its active member while the host pings: the lagg
				// follows OVS's traffic. OVS itself may lose a frame or two in
				// the move (its cached flows still output to the old member
				// for a moment, while it already drops what comes back there).
				other := 1 - active
				done := make(chan lab.PingResult, 1)
				go func() {
					r, _ := lab.Ping(o.host, laggAddr, 100, 20*time.Millisecond, 500*time.Millisecond)
					done <- r
				}()
				time.Sleep(500 * time.Millisecond)
				o.setActiveMember(t, o.member[other])
				r = <-done
				lost := r.Sent - r.Received
				t.Logf("measure: ovs %s lacp=off: active member %d -> %d during 100 pings at 20 ms: %d lost", mode, active, other, lost)
				if lost > 3 {
					o.diag(t, ap.l)
					t.Errorf("%d of %d pings lost across OVS's move of its active member, want at most 3", lost, r.Sent)
				}
				if mode == "active-backup" {
					if st := ap.l.Status(); st.Port(o.ports[other]).Flags&lagg.PortDistributing == 0 {
						t.Errorf("after the move ulagg transmits on %v, want %s", st.Ports, o.ports[other])
					}
				}
				ovsEchoOK(t, o, ap.l, 1<<20)
			})
		}
	}
}

// startLagg runs an appliance with lagg lc (ports in netns) without
// waiting for its link.
func startLagg(t *testing.T, lc config.Lagg, netns string) *app {
	t.Helper()
	cfg := config.Default()
	cfg.Laggs = []config.Lagg{lc}
	cfg.Services = []config.Service{{Kind: "tcp-echo", Port: echoPort}}
	tl := newTestLog(t)
	open := func(p config.Port, log *slog.Logger) (linkep.Port, error) {
		return linkep.Open(p.Kind, p.Name, linkep.OpenOptions{Netns: netns, SpeedMbps: p.SpeedMbps, Logger: log})
	}
	a, err := appliance.New(cfg, appliance.Options{Logger: tl.logger, OpenPort: open})
	if err != nil {
		t.Fatalf("appliance.New: %v", err)
	}
	t.Cleanup(a.Close)
	return &app{a: a, l: a.Lagg(lc.Name), log: tl}
}

// TestLACPLoopedPorts: two ports of one lagg (lacp, fallback on) are the
// two ends of one veth: each hears the other's LACPDUs, which carry the
// lagg's own system ID. They are marked looped and never carry traffic:
// alone the lagg never comes up; with a third port to a kernel host without
// LACP it falls back on that port only (3 s after its link, not held up by
// the looped ports) and the host reaches it. Before, the looped ports
// defaulted like any port without a partner and the best of them became
// the fallback port: the lagg came up sending into the loop.
func TestLACPLoopedPorts(t *testing.T) {
	lb := newLab(t)
	ns, err := lb.AddNS("lp")
	if err != nil {
		t.Fatal(err)
	}
	host, err := lb.AddNS("lh")
	if err != nil {
		t.Fatal(err)
	}
	la, lbEnd, p3, h0 := testPrefix+"lpa", testPrefix+"lpb", testPrefix+"lp3", testPrefix+"lh0"
	if err := lb.Veth(h0, host, p3, ns); err != nil { // first: see ovsStart on ifindexes
		t.Fatal(err)
	}
	if err := lb.Veth(la, ns, lbEnd, ns); err != nil {
		t.Fatal(err)
	}
	ovsRun(t, "ip", "-n", host, "addr", "add", hostIP+"/24", "dev", h0)
	ovsRun(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")

	lc := laggConfig(config.ProtoLACP, la, lbEnd)
	lc.LACP.Rate = "fast"
	lc.LACP.Fallback = true
	ap := startLagg(t, lc, ns)
	start := time.Now()
	for time.Since(start) < 4500*time.Millisecond {
		if st := ap.l.Status(); st.Up {
			t.Fatalf("at %v: a lagg of two looped ports is up: %+v", time.Since(start), st.Ports)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := ap.l.Status()
	for _, ps := range st.Ports {
		if !ps.LACP.Looped || ps.LACP.Counters.LoopbackRx == 0 || ps.Flags&(lagg.PortCollecting|lagg.PortDistributing) != 0 {
			t.Errorf("%s: looped %v, loopback rx %d, flags %v; want looped and idle", ps.Name, ps.LACP.Looped, ps.LACP.Counters.LoopbackRx, ps.Flags)
		}
		if ovsDataFrames(&ps) != 0 {
			t.Errorf("%s sent %d data frames into the loop", ps.Name, ovsDataFrames(&ps))
		}
	}
	if v := ifconfigV(ap.a); !strings.Contains(v, "\t\talarm: 2 looped ports") || !strings.Contains(v, "\t\t\tlooped: ") {
		t.Errorf("ifconfig -v shows no looped ports:\n%s", v)
	}
	if g, ok := gauge(t, ap.a, "ulagg_lacp_port_looped", "lagg=lagg0", "port="+la); !ok || g != 1 {
		t.Errorf("metric ulagg_lacp_port_looped{port=%s}: %v (found %v), want 1", la, g, ok)
	}
	if n := ap.log.count("looped ports"); n != 1 {
		t.Errorf("%d looped log lines, want 1", n)
	}

	// A third port, to a kernel host (no LACP), with the worst priority.
	lc.Ports = append(lc.Ports, config.Port{Name: p3, Kind: "afpacket", Priority: 60000})
	added := time.Now()
	if err := ap.a.ApplyLagg(lc); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 6*time.Second, "fallback on the third port", func() bool { return ap.l.Status().Up })
	t.Logf("measure: looped pair + 1 port to a kernel host: fallback up %v after the port was added", time.Since(added).Round(time.Millisecond))
	st = ap.l.Status()
	if ps := st.Port(p3); ps.Flags&lagg.PortDistributing == 0 || ovsDistributingIn(st) != 1 {
		t.Errorf("fallback ports: %+v, want %s alone", st.Ports, p3)
	}
	pingOK(t, host, 5)
	echoOK(t, host, 1<<20)
	st = ap.l.Status()
	for _, name := range []string{la, lbEnd} {
		if n := ovsDataFrames(st.Port(name)); n != 0 {
			t.Errorf("looped port %s sent %d data frames, want 0", name, n)
		}
	}
}

// ovsDistributingIn counts the ports flagged DISTRIBUTING in st.
func ovsDistributingIn(st lagg.Status) int {
	n := 0
	for _, p := range st.Ports {
		if p.Flags&lagg.PortDistributing != 0 {
			n++
		}
	}
	return n
}

// TestLACPConfigSelect: [lagg.lacp] select and `lagglacp select` parse,
// validate, reach the lagg and are saved; the default is stable. It needs
// no root.
func TestLACPConfigSelect(t *testing.T) {
	const file = "[[lagg]]\nname = \"lagg0\"\nproto = \"lacp\"\n[lagg.lacp]\nselect = \"count\"\n"
	cfg, err := config.Parse("ulagg.toml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Laggs[0].LACP.Select; got != "count" {
		t.Errorf("select: got %q, want count", got)
	}
	if _, err := config.Parse("ulagg.toml", []byte(strings.Replace(file, "count", "fastest", 1))); err == nil || !strings.Contains(err.Error(), "lagg[0].lacp.select") {
		t.Errorf("select = fastest: got %v, want an error naming lagg[0].lacp.select", err)
	}
	if got := config.NewLagg("x").LACP.Select; got != "" {
		t.Errorf("default select: got %q, want \"\" (stable)", got)
	}
	next := config.Default()
	next.Laggs = []config.Lagg{config.NewLagg("lagg0")}
	next.Laggs[0].Proto = config.ProtoLACP
	for _, tc := range []struct {
		args string
		want string
		err  string
	}{
		{"lagg0 lagglacp select bandwidth", "bandwidth", ""},
		{"lagg0 lagglacp select count fast", "count", ""},
		{"lagg0 lagglacp -select", "", ""},
		{"lagg0 lagglacp select", "", "missing policy"},
		{"lagg0 lagglacp select best", "", "unknown policy"},
	} {
		cmd, err := config.ParseIfconfig(strings.Fields(tc.args))
		if err == nil {
			var got *config.Config
			got, err = cmd.Apply(next, nil)
			if err == nil && got.Laggs[0].LACP.Select != tc.want {
				t.Errorf("%s: select %q, want %q", tc.args, got.Laggs[0].LACP.Select, tc.want)
			}
			if err == nil && tc.want != "" {
				if b, merr := config.Marshal(got); merr != nil || !strings.Contains(string(b), "select = \""+tc.want+"\"") {
					t.Errorf("%s: saved configuration lacks select (%v):\n%s", tc.args, merr, b)
				}
			}
		}
		if (err != nil) != (tc.err != "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want %q", tc.args, err, tc.err)
		}
	}
	for _, tc := range []struct {
		sel  string
		want lagg.LACPSelect
	}{{"", ""}, {"bandwidth", lagg.LACPSelectBandwidth}} {
		o := lagg.DefaultOptions("lsel")
		o.Proto = lagg.ProtoLACP
		o.Logger = slog.New(slog.DiscardHandler)
		o.LACP.Select = lagg.LACPSelect(tc.sel)
		l, err := lagg.New(o)
		if err != nil {
			t.Fatal(err)
		}
		want := string(tc.want)
		if want == "" {
			want = "stable"
		}
		if got := l.Status().LACP.Select; got != want {
			t.Errorf("lagg with select %q: status select %q, want %q", tc.sel, got, want)
		}
		l.Close()
	}
	o := lagg.DefaultOptions("lsel")
	o.Proto = lagg.ProtoLACP
	o.Logger = slog.New(slog.DiscardHandler)
	o.LACP.Select = "fastest"
	if _, err := lagg.New(o); err == nil {
		t.Errorf("lagg with select fastest: no error")
	}
}
