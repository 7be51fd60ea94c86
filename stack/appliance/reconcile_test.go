package appliance_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	ustack "github.com/ulagg/ulagg/stack"
	"github.com/ulagg/ulagg/stack/appliance"
)

// Bug 1: a reload moves a port from one lagg to another. Every lagg
// releases what leaves before any lagg acquires.
func TestReconcilePortMovesBetweenLaggs(t *testing.T) {
	const toml = `
[[lagg]]
name = "lagg0"
proto = "failover"
mac = "02:00:00:00:0b:01"
[[lagg.port]]
name = "p0"
kind = "wire"
[[lagg]]
name = "lagg1"
proto = "loadbalance"
mac = "02:00:00:00:0b:02"
[[lagg.port]]
name = "p1"
kind = "wire"
[[lagg.port]]
name = "p2"
kind = "wire"
`
	r := newReconRig(t, toml, "failover", reconOptions{}, "p0", "p1", "p2")
	move := func(ports map[string][]string) *config.Config {
		next := r.a.Config()
		for name, ps := range ports {
			l := next.Lagg(name)
			l.Ports = nil
			for _, p := range ps {
				l.Ports = append(l.Ports, config.Port{Name: p, Kind: "wire", Priority: config.DefaultPriority})
			}
		}
		return next
	}
	for _, step := range []map[string][]string{
		{"lagg0": {"p0", "p2"}, "lagg1": {"p1"}}, // the case
		{"lagg0": {"p1"}, "lagg1": {"p0", "p2"}}, // a swap, and one more
		{"lagg0": {"p0", "p1", "p2"}, "lagg1": nil},
	} {
		next := move(step)
		if err := r.a.ReloadConfig(next); err != nil {
			t.Fatalf("reload %v: %v", step, err)
		}
		for name, want := range step {
			got := r.ports(name)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("after %v: %s has ports %v, want %v", step, name, got, want)
			}
		}
		if got := r.a.Config(); !reflect.DeepEqual(got, next) {
			t.Errorf("after %v: running config\n%+v\nwant\n%+v", step, got.Laggs, next.Laggs)
		}
	}
}

// Bug 2: removing one address keeps the subnet route that the others need,
// with ifconfig -alias and with a reload.
func TestReconcileRemoveOneAddressKeepsSubnet(t *testing.T) {
	r := newReconRig(t, failoverTOML, "failover", reconOptions{}, "wm0", "wm1")
	r.waitRunning("lagg0", 10*time.Second)
	nic := r.a.NIC("lagg0")
	subnet := ustack.ProtocolAddress(netip.MustParsePrefix("192.168.1.1/24")).AddressWithPrefix.Subnet()
	hasRoute := func() bool {
		return slices.ContainsFunc(r.a.Stack().GetRouteTable(), func(rt tcpip.Route) bool { return rt.NIC == nic && rt.Destination == subnet })
	}
	check := func(when string) {
		t.Helper()
		if !hasRoute() {
			t.Fatalf("%s: the route to 192.168.1.0/24 is gone, 192.168.1.1 still needs it; routes %v", when, r.a.Stack().GetRouteTable())
		}
		tr := r.startTransfer()
		tr.WaitMore(t, 64<<10, 10*time.Second)
		tr.Wait(t, 30*time.Second)
	}
	r.mustIfconfig("lagg0 inet 192.168.1.3 netmask 255.255.255.0 alias")
	r.mustIfconfig("lagg0 inet 192.168.1.3 -alias")
	check("after ifconfig -alias")

	next := r.a.Config()
	next.Lagg("lagg0").Addresses = append(next.Lagg("lagg0").Addresses, netip.MustParsePrefix("192.168.1.4/24"))
	if err := r.a.ReloadConfig(next); err != nil {
		t.Fatal(err)
	}
	next = next.Clone()
	next.Lagg("lagg0").Addresses = next.Lagg("lagg0").Addresses[:1]
	if err := r.a.ReloadConfig(next); err != nil {
		t.Fatal(err)
	}
	check("after a reload that drops 192.168.1.4")
	// The last address of the subnet takes its route with it.
	r.mustIfconfig("lagg0 inet 192.168.1.1 -alias")
	if hasRoute() {
		t.Errorf("the route to 192.168.1.0/24 stays after its last address left")
	}
}

// statusJSON returns the ports of lagg name in `ulagg ifconfig --json`, as
// plain maps (so that the test reads what a script reads).
func (r *reconRig) statusJSON(name string) []map[string]any {
	r.t.Helper()
	out, err := r.call(appliance.ControlRequest{Cmd: appliance.CmdStatus, Lagg: name, JSON: true})
	if err != nil {
		r.t.Fatal(err)
	}
	var st []map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 {
		r.t.Fatalf("--json: %v\n%s", err, out)
	}
	var ports []map[string]any
	for _, p := range st[0]["ports"].([]any) {
		ports = append(ports, p.(map[string]any))
	}
	return ports
}

func portJSON(ports []map[string]any, name string) map[string]any {
	for _, p := range ports {
		if p["name"] == name {
			return p
		}
	}
	return nil
}

// scrapeMetrics returns the appliance's metrics as text.
func scrapeMetrics(t *testing.T, a *appliance.Appliance) string {
	t.Helper()
	m, err := appliance.ListenMetrics(a, "127.0.0.1:0", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	resp, err := http.Get("http://" + m.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const missingLine = "\t\twm0 pri=1000 flags=0x0 <MISSING>\n"

// Bug 3: a port whose interface disappears mid-transfer stays configured,
// is shown missing (text, JSON, metric), is saved, survives reloads,
// comes back by itself when its interface appears, and can be removed
// while missing. The appliance has no watcher for this kind here: it
// retries with backoff.
func TestReconcilePortGoneAndBack(t *testing.T) {
	r := newReconRig(t, failoverTOML, "failover", reconOptions{noWatcher: true}, "wm0", "wm1")
	r.waitRunning("lagg0", 10*time.Second)
	tr := r.startTransfer()
	tr.WaitMore(t, 64<<10, 10*time.Second)

	r.w.vanish("wm0")
	testkit.WaitFor(t, 5*time.Second, "wm0 shown <MISSING>", func() bool {
		return strings.Contains(r.status("lagg0", false), missingLine)
	})
	l := r.a.Lagg("lagg0")
	if st := l.Status(); st.TxPort != "wm1" {
		t.Errorf("transmit port %q after wm0 went, want wm1", st.TxPort)
	}
	if p := portJSON(r.statusJSON("lagg0"), "wm0"); p == nil || p["missing"] != true {
		t.Errorf("--json: wm0 is %v, want \"missing\": true", p)
	}
	if m := scrapeMetrics(t, r.a); !strings.Contains(m, `ulagg_port_missing{lagg="lagg0",port="wm0"} 1`) || !strings.Contains(m, `ulagg_port_missing{lagg="lagg0",port="wm1"} 0`) {
		t.Errorf("metrics lack ulagg_port_missing for wm0 (1) and wm1 (0)")
	}
	tr.WaitMore(t, 64<<10, 10*time.Second)

	// save writes the configured ports, missing or not.
	if _, err := r.call(appliance.ControlRequest{Cmd: appliance.CmdSave}); err != nil {
		t.Fatalf("save: %v", err)
	}
	saved, err := config.Load(r.file)
	if err != nil {
		t.Fatal(err)
	}
	if p := findSaved(saved, "lagg0", "wm0"); p == nil || p.Priority != 1000 {
		t.Errorf("saved file lacks wm0 (pri 1000): %+v", saved.Lagg("lagg0").Ports)
	}
	// A reload of that file changes nothing and fails nothing.
	fo := l.Status().Failovers
	if _, err := r.call(appliance.ControlRequest{Cmd: appliance.CmdReload}); err != nil {
		t.Fatalf("reload with wm0 missing: %v", err)
	}
	if st := l.Status(); st.Failovers != fo || !slices.Equal(l.Ports(), []string{"wm1"}) {
		t.Errorf("reload with wm0 missing: failovers %d -> %d, ports %v", fo, st.Failovers, l.Ports())
	}
	// The interface appears again: the port is back, and transmits.
	r.w.appear("wm0")
	r.waitPorts("lagg0", 10*time.Second, "wm0", "wm1")
	testkit.WaitFor(t, 5*time.Second, "wm0 transmitting again", func() bool { return l.Status().TxPort == "wm0" })
	if strings.Contains(r.status("lagg0", false), "<MISSING>") {
		t.Errorf("still shown missing after it came back:\n%s", r.status("lagg0", false))
	}
	tr.WaitMore(t, 64<<10, 10*time.Second)

	// Gone again, and removed while missing: it is not attached when it
	// appears.
	r.w.vanish("wm0")
	testkit.WaitFor(t, 5*time.Second, "wm0 shown <MISSING>", func() bool {
		return strings.Contains(r.status("lagg0", false), missingLine)
	})
	r.mustIfconfig("lagg0 -laggport wm0")
	if p := findSaved(r.a.Config(), "lagg0", "wm0"); p != nil {
		t.Errorf("wm0 still configured after -laggport")
	}
	r.w.appear("wm0")
	time.Sleep(300 * time.Millisecond)
	if got := l.Ports(); !slices.Equal(got, []string{"wm1"}) {
		t.Errorf("ports %v after a removed port's interface appeared, want [wm1]", got)
	}
	tr.WaitMore(t, 64<<10, 10*time.Second)
	tr.Wait(t, 30*time.Second)
}

func findSaved(c *config.Config, lagg, port string) *config.Port {
	l := c.Lagg(lagg)
	if l == nil {
		return nil
	}
	for i := range l.Ports {
		if l.Ports[i].Name == port {
			return &l.Ports[i]
		}
	}
	return nil
}

// Bug 3, with a watcher: the port is attached as soon as the watcher says
// its interface appeared, and the watch ends then.
func TestReconcileWatcherAttaches(t *testing.T) {
	r := newReconRig(t, failoverTOML, "failover", reconOptions{}, "wm0", "wm1")
	r.waitRunning("lagg0", 10*time.Second)
	r.w.vanish("wm0")
	testkit.WaitFor(t, 5*time.Second, "a watch on wm0", func() bool { return r.w.watching("wm0") == 1 })
	start := time.Now()
	r.w.appear("wm0")
	r.waitPorts("lagg0", 5*time.Second, "wm0", "wm1")
	t.Logf("measure: missing port attached %v after its interface appeared", time.Since(start))
	testkit.WaitFor(t, 5*time.Second, "the watch on wm0 to end", func() bool { return r.w.watching("wm0") == 0 })
}

// Bug 4: a missing interface at start does not stop the appliance: the
// lagg runs on its other ports with a warning, and the port joins when it
// appears. --strict refuses instead.
func TestReconcileStartsDegraded(t *testing.T) {
	r := newReconRig(t, failoverTOML, "failover", reconOptions{absent: []string{"wm0"}}, "wm0", "wm1")
	r.waitRunning("lagg0", 10*time.Second)
	if got := r.ports("lagg0"); !slices.Equal(got, []string{"wm1"}) {
		t.Fatalf("ports at start: %v, want [wm1]", got)
	}
	if out := r.status("lagg0", false); !strings.Contains(out, missingLine) {
		t.Errorf("status at start lacks wm0 <MISSING>:\n%s", out)
	}
	if log := r.logBuf.String(); !strings.Contains(log, "starting degraded") || !strings.Contains(log, "ip -br link") || !strings.Contains(log, "wm0") {
		t.Errorf("no warning about the missing port at start:\n%s", log)
	}
	tr := r.startTransfer()
	tr.WaitMore(t, 64<<10, 10*time.Second)
	r.w.appear("wm0")
	r.waitPorts("lagg0", 5*time.Second, "wm0", "wm1")
	tr.WaitMore(t, 64<<10, 10*time.Second)
	tr.Wait(t, 30*time.Second)
}

func TestReconcileStrictRefusesMissing(t *testing.T) {
	var err error
	newReconRig(t, failoverTOML, "failover", reconOptions{absent: []string{"wm0"}, strict: true, newErr: &err}, "wm0", "wm1")
	if err == nil || !strings.Contains(err.Error(), "wm0") || !strings.Contains(err.Error(), "ip -br link") {
		t.Fatalf("strict start with wm0 missing: got %v, want a refusal naming wm0", err)
	}
	// A strict reload naming a missing port is refused and touches
	// nothing.
	r := newReconRig(t, failoverTOML, "failover", reconOptions{strict: true}, "wm0", "wm1", "wm2")
	r.waitRunning("lagg0", 10*time.Second)
	l := r.a.Lagg("lagg0")
	fo, touched := l.Status().Failovers, r.w.mtuTouches("wm0")
	next := r.a.Config()
	lc := next.Lagg("lagg0")
	lc.Ports = append(lc.Ports[1:], config.Port{Name: "nosuch0", Kind: "wire", Priority: 5})
	if err := r.a.ReloadConfig(next); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Fatalf("strict reload with a missing port: got %v, want a refusal", err)
	}
	if got := l.Ports(); !slices.Equal(got, []string{"wm0", "wm1"}) || l.Status().Failovers != fo || r.w.mtuTouches("wm0") != touched {
		t.Errorf("after the refused reload: ports %v, failovers %d -> %d", got, fo, l.Status().Failovers)
	}
}

// Bug 5: a refused ifconfig line leaves no trace: no failover, no
// announcement, no port touched; and words apply in the user's order.
func TestReconcileRefusedLeavesNoTrace(t *testing.T) {
	r := newReconRig(t, failoverTOML, "failover", reconOptions{}, "wm0", "wm1", "wm2")
	r.waitRunning("lagg0", 10*time.Second)
	r.w.capMTU("wm2", 1500)
	l := r.a.Lagg("lagg0")
	nic := r.a.NIC("lagg0")
	var announces atomic.Int64
	l.SetAnnouncer(func() {
		announces.Add(1)
		_ = ustack.Announce(r.a.Stack(), nic)
	})
	time.Sleep(3 * lagg.DefaultAnnounceInterval) // the start-up announcements' repeat is over
	tr := r.startTransfer()
	tr.WaitMore(t, 64<<10, 10*time.Second)
	st0 := l.Status()
	a0 := announces.Load()
	touched := map[string]int{"wm0": r.w.mtuTouches("wm0"), "wm1": r.w.mtuTouches("wm1")}
	cfg0 := r.a.Config()
	for _, line := range []string{
		"lagg0 -laggport wm0 laggport doesnotexist0",
		"lagg0 -laggport wm0 laggport wm2 laggport doesnotexist0",
		"lagg0 laggproto loadbalance -laggport wm1 laggport doesnotexist0",
		"lagg0 mtu 9000 laggport wm2", // wm2 cannot take 9000
		"lagg0 laggportpri wm1 1 mtu 9000 laggport wm2",
	} {
		if err := r.ifconfig(line); err == nil {
			t.Fatalf("ulagg ifconfig %s: accepted", line)
		}
	}
	time.Sleep(200 * time.Millisecond) // announcements are asynchronous
	st := l.Status()
	if st.Failovers != st0.Failovers || st.TxPort != "wm0" {
		t.Errorf("refused lines failed over: failovers %d -> %d, transmit port %s", st0.Failovers, st.Failovers, st.TxPort)
	}
	if got := announces.Load(); got != a0 {
		t.Errorf("refused lines sent %d announcements", got-a0)
	}
	for name, n := range touched {
		if got := r.w.mtuTouches(name); got != n {
			t.Errorf("refused lines set %s's MTU %d times", name, got-n)
		}
	}
	if st.Port("wm0").Counters.TxFrames < st0.Port("wm0").Counters.TxFrames {
		t.Errorf("wm0 was re-created (its counters started again)")
	}
	if got := r.a.Config(); !reflect.DeepEqual(got, cfg0) {
		t.Errorf("running config changed")
	}
	tr.WaitMore(t, 64<<10, 10*time.Second)

	// In the user's order: wm2 leaves before the MTU it cannot take.
	r.mustIfconfig("lagg0 laggport wm2 pri 3000")
	r.mustIfconfig("lagg0 -laggport wm2 mtu 9000")
	if got := l.MTU(); got != 9000 || r.wires["wm0"].A.MTU() != 9000 || r.wires["wm2"].A.MTU() != 1500 {
		t.Errorf("after -laggport wm2 mtu 9000: lagg MTU %d, wm0 %d, wm2 %d", got, r.wires["wm0"].A.MTU(), r.wires["wm2"].A.MTU())
	}
	tr.WaitMore(t, 64<<10, 10*time.Second)
	tr.Wait(t, 30*time.Second)
}

// Bug 5 with LACP: a refused line does not renegotiate.
func TestReconcileRefusedLeavesLACPAlone(t *testing.T) {
	r := newReconRig(t, `
[[lagg]]
name = "lagg0"
proto = "lacp"
addresses = ["192.168.1.1/24"]
mac = "02:00:00:00:0a:01"
[lagg.lacp]
rate = "fast"
[[lagg.port]]
name = "wm0"
kind = "wire"
[[lagg.port]]
name = "wm1"
kind = "wire"
`, "lacp", reconOptions{}, "wm0", "wm1")
	l := r.a.Lagg("lagg0")
	distributing := func() bool {
		st := l.Status()
		for _, p := range st.Ports {
			if p.Flags&lagg.PortDistributing == 0 || p.LACP == nil || p.LACP.Counters.LACPDUsRx < 3 {
				return false
			}
		}
		return len(st.Ports) == 2
	}
	testkit.WaitFor(t, 20*time.Second, "both ports distributing", distributing)
	before := l.Status()
	if err := r.ifconfig("lagg0 -laggport wm0 laggport doesnotexist0"); err == nil {
		t.Fatal("accepted")
	}
	after := l.Status()
	for _, name := range []string{"wm0", "wm1"} {
		b, a := before.Port(name), after.Port(name)
		if a == nil || a.Flags&lagg.PortDistributing == 0 || a.LACP.Mux != "DISTRIBUTING" || a.LACP.Counters.LACPDUsRx < b.LACP.Counters.LACPDUsRx {
			t.Errorf("%s after a refused line: %+v, before %+v", name, a, b)
		}
	}
}

// Bug 12: status readers do not wait for a change in progress.
func TestReconcileStatusNeverWaits(t *testing.T) {
	r := newReconRig(t, failoverTOML, "failover", reconOptions{}, "wm0", "wm1", "wm2")
	r.waitRunning("lagg0", 10*time.Second)
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{})}
	r.w.mu.Lock()
	r.w.block["wm2"] = b
	r.w.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- r.ifconfig("lagg0 laggport wm2 pri 3000") }()
	<-b.entered // the change holds the appliance, opening wm2
	readers := map[string]func(){
		"Status":  func() { _ = r.a.Status() },
		"Config":  func() { _ = r.a.Config() },
		"Lagg":    func() { _ = r.a.Lagg("lagg0") },
		"socket":  func() { _ = r.status("lagg0", true) },
		"metrics": func() { _ = scrapeMetrics(t, r.a) },
	}
	for name, read := range readers {
		ok := make(chan struct{})
		start := time.Now()
		go func() {
			read()
			close(ok)
		}()
		select {
		case <-ok:
			t.Logf("measure: %s during a change: %v", name, time.Since(start))
		case <-time.After(2 * time.Second):
			t.Errorf("%s waits for the change in progress", name)
		}
	}
	close(b.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r.waitPorts("lagg0", 5*time.Second, "wm0", "wm1", "wm2")
}

// Bug 10: a reload prints what it applied, refuses to undo unsaved
// runtime changes unless forced, and diff shows without applying; SIGHUP's
// reload logs what it discards.
func TestReconcileReloadHonest(t *testing.T) {
	r := newReconRig(t, failoverTOML, "failover", reconOptions{}, "wm0", "wm1", "wm2")
	r.waitRunning("lagg0", 10*time.Second)
	r.mustIfconfig("lagg0 mtu 4000", "lagg0 laggport wm2 pri 3000")
	_, err := r.call(appliance.ControlRequest{Cmd: appliance.CmdReload})
	if err == nil || !strings.Contains(err.Error(), "lagg0: mtu auto -> 4000") || !strings.Contains(err.Error(), "lagg0: port wm2 added") {
		t.Fatalf("reload over unsaved runtime changes: got %v, want a refusal listing them", err)
	}
	if got := r.a.Lagg("lagg0").MTU(); got != 4000 {
		t.Fatalf("the refused reload changed the MTU to %d", got)
	}
	out, err := r.call(appliance.ControlRequest{Cmd: appliance.CmdReload, DryRun: true})
	if err != nil || !strings.Contains(out, "  lagg0: mtu 4000 -> auto\n") || !strings.Contains(out, "  lagg0: port wm2 removed") {
		t.Fatalf("diff: %v\n%s", err, out)
	}
	if got := r.a.Lagg("lagg0").MTU(); got != 4000 {
		t.Fatalf("diff changed the MTU to %d", got)
	}
	out, err = r.call(appliance.ControlRequest{Cmd: appliance.CmdReload, Force: true})
	if err != nil || !strings.Contains(out, "lagg0: mtu 4000 -> auto\n") || !strings.Contains(out, "discarded runtime change: lagg0: port wm2 added") {
		t.Fatalf("reload --force: %v\n%s", err, out)
	}
	if got := r.a.Lagg("lagg0").MTU(); got != 1500 || len(r.ports("lagg0")) != 2 {
		t.Fatalf("after reload --force: MTU %d, ports %v", got, r.ports("lagg0"))
	}
	// A file edit: each change printed; nothing to discard.
	cfg, err := config.Load(r.file)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Lagg("lagg0").Ports[1].Priority = 3000
	cfg.Lagg("lagg0").Addresses = append(cfg.Lagg("lagg0").Addresses, netip.MustParsePrefix("fd00::1/64"))
	writeConfig(t, r.file, cfg)
	out, err = r.call(appliance.ControlRequest{Cmd: appliance.CmdReload})
	want := "lagg0: port wm1 priority 2000 -> 3000\nlagg0: address fd00::1/64 added\nreloaded " + r.file + ": 2 changes\n"
	if err != nil || out != want {
		t.Fatalf("reload of an edited file: %v\ngot  %q\nwant %q", err, out, want)
	}
	// SIGHUP (ReloadFile) applies the file over runtime changes and logs
	// each one it discards.
	r.mustIfconfig("lagg0 laggproto loadbalance")
	if err := r.a.ReloadFile(r.file); err != nil {
		t.Fatal(err)
	}
	if got := r.a.Lagg("lagg0").Config().Proto; got != "failover" {
		t.Errorf("after SIGHUP's reload: proto %s, want failover", got)
	}
	if log := r.logBuf.String(); !strings.Contains(log, "reload discarded a runtime change") || !strings.Contains(log, "proto failover -> loadbalance") {
		t.Errorf("the discarded change is not logged:\n%s", log)
	}
}

func writeConfig(t *testing.T, path string, cfg *config.Config) {
	t.Helper()
	data, err := config.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Bug 11: save writes through a symbolic link, keeps the file's owner,
// group and mode, keeps the previous file as FILE.bak and the file's
// leading comments, and leaves a file that already says the same alone.
func TestReconcileSaveKeepsFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file another owner")
	}
	const header = "# ulagg on the lab box\n# owner: netops\n\n"
	r := newReconRig(t, header+failoverTOML, "failover", reconOptions{symlink: true}, "wm0", "wm1", "wm2")
	real, err := filepath.EvalSymlinks(r.file)
	if err != nil || real == r.file {
		t.Fatalf("the rig's file is not a symbolic link: %v", err)
	}
	if err := os.Chown(real, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(real, 0o640); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	r.mustIfconfig("lagg0 laggport wm2 pri 3000")
	out, err := r.call(appliance.ControlRequest{Cmd: appliance.CmdSave})
	if err != nil || out != "saved the running configuration to "+r.file+"\n" {
		t.Fatalf("save: %q, %v", out, err)
	}
	if fi, err := os.Lstat(r.file); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is no longer a symbolic link: %v %v", r.file, fi.Mode(), err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 5678 || fi.Mode().Perm() != 0o640 {
		t.Errorf("saved file: owner %d:%d mode %v, want 1234:5678 -rw-r-----", st.Uid, st.Gid, fi.Mode().Perm())
	}
	data, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), header) || !strings.Contains(string(data), `name = "wm2"`) {
		t.Errorf("saved file lacks the header comments or wm2:\n%s", data)
	}
	bak, err := os.ReadFile(real + ".bak")
	if err != nil || string(bak) != string(before) {
		t.Errorf("%s.bak: %v; want the previous file", real, err)
	}
	if saved, err := config.Load(r.file); err != nil || len(config.Items(saved, r.a.Config())) != 0 {
		t.Errorf("the saved file does not load as the running configuration: %v", err)
	}
	// Nothing changed since: the file is left alone.
	fi0, _ := os.Stat(real)
	out, err = r.call(appliance.ControlRequest{Cmd: appliance.CmdSave})
	if err != nil || !strings.Contains(out, "already holds the running configuration") {
		t.Errorf("second save: %q, %v", out, err)
	}
	if fi1, _ := os.Stat(real); !os.SameFile(fi0, fi1) {
		t.Errorf("an unchanged configuration rewrote the file")
	}
}
