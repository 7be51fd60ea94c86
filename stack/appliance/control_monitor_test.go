package appliance_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/stack/appliance"
)

// monitorRec reads a monitor stream and checks each event against the
// events schema.
type monitorRec struct {
	t    *testing.T
	m    *appliance.MonitorStream
	seen []appliance.MonitorEvent
}

func startMonitor(t *testing.T, sock string, req appliance.ControlRequest) *monitorRec {
	t.Helper()
	m, err := appliance.StartMonitor(sock, req)
	if err != nil {
		t.Fatalf("monitor: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return &monitorRec{t: t, m: m}
}

// waitFor reads events until one matches, within timeout, and returns it.
func (r *monitorRec) waitFor(what string, timeout time.Duration, match func(appliance.MonitorEvent) bool) appliance.MonitorEvent {
	r.t.Helper()
	s := compileSchema(r.t, "events.schema.json")
	_ = r.m.SetDeadline(time.Now().Add(timeout))
	defer r.m.SetDeadline(time.Time{})
	for {
		ev, err := r.m.Next()
		if err != nil {
			end, _ := r.m.End()
			r.t.Fatalf("waiting for %s: %v (end: %q); events so far:\n%s", what, err, end.Detail, r.lines())
		}
		b, err := json.Marshal(ev)
		if err != nil {
			r.t.Fatal(err)
		}
		validateJSON(r.t, s, "event", b)
		r.seen = append(r.seen, ev)
		if match(ev) {
			return ev
		}
	}
}

func (r *monitorRec) lines() string {
	var b strings.Builder
	for _, ev := range r.seen {
		b.WriteString(appliance.FormatEvent(ev) + "\n")
	}
	return b.String()
}

func kindPort(kind, port string) func(appliance.MonitorEvent) bool {
	return func(ev appliance.MonitorEvent) bool { return ev.Kind == kind && (port == "" || ev.Port == port) }
}

// TestMonitorFailover: pulling the transmitting port's link shows the link
// event (with its reason), then the failover to the other port, then the
// first frame on it with the time it took; putting it back shows the link
// coming up and the failover back.
func TestMonitorFailover(t *testing.T) {
	r := failoverRig(t)
	mon := startMonitor(t, r.sock, appliance.ControlRequest{Lagg: "lagg0"})
	tr := r.startTransfer()
	tr.WaitMore(t, 64<<10, 10*time.Second)
	r.wires["wm0"].SetLinkUp(false)
	down := mon.waitFor("wm0 down", 10*time.Second, kindPort("link", "wm0"))
	if down.Up == nil || *down.Up || down.Reason != "carrier" || down.Lagg != "lagg0" {
		t.Errorf("link event: got %s, want wm0 down (carrier)", appliance.FormatEvent(down))
	}
	fo := mon.waitFor("failover", 10*time.Second, kindPort("failover", ""))
	if fo.From != "wm0" || fo.To != "wm1" {
		t.Errorf("failover: got %s, want wm0 -> wm1", appliance.FormatEvent(fo))
	}
	done := mon.waitFor("failover-done", 10*time.Second, kindPort("failover-done", ""))
	if done.From != "wm0" || done.To != "wm1" || done.DurationMs == nil {
		t.Errorf("failover-done: got %s, want wm0 -> wm1 with a duration", appliance.FormatEvent(done))
	}
	line := appliance.FormatEvent(done)
	if !strings.Contains(line, " lagg0 failover-done wm0 -> wm1 (") || !strings.HasSuffix(line, " ms)") {
		t.Errorf("text form: got %q", line)
	}
	r.wires["wm0"].SetLinkUp(true)
	up := mon.waitFor("wm0 up", 10*time.Second, kindPort("link", "wm0"))
	if up.Up == nil || !*up.Up {
		t.Errorf("link event: got %s, want wm0 up", appliance.FormatEvent(up))
	}
	back := mon.waitFor("failover back", 10*time.Second, kindPort("failover", ""))
	if back.From != "wm1" || back.To != "wm0" {
		t.Errorf("failover back: got %s, want wm1 -> wm0", appliance.FormatEvent(back))
	}
	tr.Wait(t, 10*time.Second)
	// Half-closing ends the stream with its end event.
	if err := mon.m.Stop(); err != nil {
		t.Fatal(err)
	}
	_ = mon.m.SetDeadline(time.Now().Add(5 * time.Second))
	for {
		_, err := mon.m.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after Stop: %v", err)
		}
	}
	if end, ok := mon.m.End(); !ok || end.Detail != "client closed" {
		t.Errorf("end: got %+v, want client closed", end)
	}
}

// TestMonitorLACP: ports of a new lacp lagg report their LACP state as
// they start distributing, and the ifconfig lines that made the lagg are
// reported with their changes.
func TestMonitorLACP(t *testing.T) {
	r := newCtlRig(t, "", "lacp", "wm0", "wm1")
	mon := startMonitor(t, r.sock, appliance.ControlRequest{})
	r.mustIfconfig("lagg0 create", "lagg0 laggproto lacp laggport wm0 laggport wm1 192.168.1.1 netmask 255.255.255.0")
	cfg := mon.waitFor("config-applied for create", 10*time.Second, kindPort(appliance.EventConfigApplied, ""))
	if cfg.Lagg != "lagg0" || cfg.Detail != "ifconfig lagg0 create" || len(cfg.Changes) == 0 || cfg.Changes[0].Kind != "lagg" {
		t.Errorf("config-applied: got %+v", cfg)
	}
	cfg = mon.waitFor("config-applied for the ports", 10*time.Second, kindPort(appliance.EventConfigApplied, ""))
	var texts []string
	for _, c := range cfg.Changes {
		texts = append(texts, c.Text)
	}
	if all := strings.Join(texts, "\n"); !strings.Contains(all, "wm0") || !strings.Contains(all, "proto") {
		t.Errorf("config-applied changes: got %q, want the proto and the ports", all)
	}
	// LACP may converge before the ifconfig's config-applied event is
	// published, so the events already read count too.
	distributing := map[string]bool{}
	note := func(ev appliance.MonitorEvent) bool {
		if ev.Kind == "lacp" && ev.Detail == "collecting,distributing" {
			if ev.Lagg != "lagg0" || ev.Up != nil {
				t.Errorf("lacp event: got %+v", ev)
			}
			distributing[ev.Port] = true
		}
		return distributing["wm0"] && distributing["wm1"]
	}
	for _, ev := range mon.seen {
		note(ev)
	}
	if !distributing["wm0"] || !distributing["wm1"] {
		mon.waitFor("both ports distributing", 30*time.Second, note)
	}
}

// TestMonitorReload: a reload shows what it changed, and a count ends the
// stream with "count reached".
func TestMonitorReload(t *testing.T) {
	r := failoverRig(t)
	mon := startMonitor(t, r.sock, appliance.ControlRequest{Lagg: "lagg0", Count: 1})
	data, err := os.ReadFile(r.file)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), "priority = 2000", "priority = 2500", 1)
	if err := os.WriteFile(r.file, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdReload}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	ev := mon.waitFor("config-applied", 10*time.Second, kindPort(appliance.EventConfigApplied, ""))
	if ev.Detail != "reload" || len(ev.Changes) != 1 || ev.Changes[0].Kind != "port" || ev.Changes[0].Name != "wm1" ||
		!strings.Contains(ev.Changes[0].Text, "2500") {
		t.Errorf("reload event: got %+v", ev)
	}
	if line := appliance.FormatEvent(ev); !strings.Contains(line, " lagg0 config-applied by reload: lagg0: ") {
		t.Errorf("text form: got %q", line)
	}
	_ = mon.m.SetDeadline(time.Now().Add(5 * time.Second))
	if ev, err := mon.m.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the count: got %+v, %v, want the end", ev, err)
	}
	if end, _ := mon.m.End(); end.Detail != "count reached" {
		t.Errorf("end: got %q, want count reached", end.Detail)
	}
}

// TestMonitorPortMissing: a port whose interface goes away and comes back
// is reported as missing, then back.
func TestMonitorPortMissing(t *testing.T) {
	r := newReconRig(t, failoverTOML, "failover", reconOptions{}, "wm0", "wm1")
	r.waitRunning("lagg0", 10*time.Second)
	mon := startMonitor(t, r.sock, appliance.ControlRequest{Lagg: "lagg0"})
	r.w.vanish("wm1")
	gone := mon.waitFor("port-missing", 10*time.Second, kindPort(appliance.EventPortMissing, "wm1"))
	if gone.Reason != "its interface went away" {
		t.Errorf("port-missing: got reason %q", gone.Reason)
	}
	r.w.appear("wm1")
	mon.waitFor("port-back", 10*time.Second, kindPort(appliance.EventPortBack, "wm1"))
}

// TestMonitorErrors: a monitor of a lagg that does not exist, or with a
// negative count, is refused.
func TestMonitorErrors(t *testing.T) {
	r := failoverRig(t)
	for _, c := range []struct {
		req  appliance.ControlRequest
		want string
	}{
		{appliance.ControlRequest{Lagg: "lagg9"}, "monitor: lagg9: no such lagg"},
		{appliance.ControlRequest{Count: -1}, "monitor: count -1 is negative"},
	} {
		if _, err := appliance.StartMonitor(r.sock, c.req); err == nil || err.Error() != c.want {
			t.Errorf("monitor %+v: got %v, want %q", c.req, err, c.want)
		}
	}
}

// TestMonitorSlowSubscriber: a subscriber that does not read loses what
// does not fit its queue, is told how many in order, and never holds up
// the appliance.
func TestMonitorSlowSubscriber(t *testing.T) {
	r := failoverRig(t)
	// Saves are appliance-wide events (lagg ""): they reach a subscriber
	// of a lagg that sees no other events, so the count is exact.
	sub := r.a.Subscribe("nosuchlagg", 2)
	defer sub.Close()
	save := func(mtu int) {
		t.Helper()
		r.mustIfconfig(fmt.Sprintf("lagg0 mtu %d", mtu))
		if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdSave}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for i := range 5 {
		save(1400 + i)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("5 changes with a stalled subscriber took %v", d)
	}
	var got []string
	drain := func() {
		for {
			select {
			case ev := <-sub.C():
				if ev.Kind == appliance.EventLost {
					got = append(got, fmt.Sprintf("lost %d", ev.Lost))
				} else {
					got = append(got, ev.Kind)
				}
			default:
				return
			}
		}
	}
	drain()
	save(1500)
	drain()
	want := []string{"config-saved", "config-saved", "lost 3", "config-saved"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events: got %v, want %v", got, want)
	}
}

// TestFormatEvent: the text form of each kind.
func TestFormatEvent(t *testing.T) {
	at := time.Date(2026, 12, 1, 4, 5, 6, 123456789, time.UTC)
	f, tr := false, true
	ms := 0.21
	ev := func(kind string) appliance.MonitorEvent {
		var m appliance.MonitorEvent
		m.Time, m.Lagg, m.Kind = at, "lagg0", kind
		return m
	}
	link := ev("link")
	link.Port, link.Up, link.Reason = "veth0", &f, "carrier"
	fo := ev("failover-done")
	fo.Port, fo.From, fo.To, fo.DurationMs = "veth1", "veth0", "veth1", &ms
	lost := ev(appliance.EventLost)
	lost.Lagg, lost.Lost = "", 7
	unknown := ev("event(42)")
	unknown.Port, unknown.Up, unknown.Detail = "veth0", &tr, "arp reply from 192.168.1.2"
	cfg := ev(appliance.EventConfigApplied)
	cfg.Detail, cfg.Changes = "reload", []appliance.ChangeJSON{{Text: "lagg0: mtu 1500 -> 9000"}}
	for _, c := range []struct {
		ev   appliance.MonitorEvent
		want string
	}{
		{link, "2026-12-01T04:05:06.123Z lagg0 link veth0 down (carrier)"},
		{fo, "2026-12-01T04:05:06.123Z lagg0 failover-done veth0 -> veth1 (0.21 ms)"},
		{lost, "2026-12-01T04:05:06.123Z lost 7 events (the monitor did not keep up)"},
		{unknown, "2026-12-01T04:05:06.123Z lagg0 event(42) veth0 up arp reply from 192.168.1.2"},
		{cfg, "2026-12-01T04:05:06.123Z lagg0 config-applied by reload: lagg0: mtu 1500 -> 9000"},
	} {
		if got := appliance.FormatEvent(c.ev); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
	// A lagg event of a kind this version does not name flows through.
	j := lagg.Event{Kind: lagg.EventKind(42), Lagg: "lagg0", Time: at}.JSON()
	if j.Kind != "event(42)" {
		t.Errorf("unknown kind: got %q", j.Kind)
	}
}

// TestMonitorCap: beyond 16 monitors at once, one more is refused, and
// commands still get through; a monitor that ends frees its place.
func TestMonitorCap(t *testing.T) {
	r := failoverRig(t)
	var ms []*appliance.MonitorStream
	for range 16 {
		m, err := appliance.StartMonitor(r.sock, appliance.ControlRequest{})
		if err != nil {
			t.Fatalf("monitor %d: %v", len(ms)+1, err)
		}
		defer m.Close()
		ms = append(ms, m)
	}
	const want = "monitor: 16 monitors are running, the most ulagg serves at once; stop one first"
	if _, err := appliance.StartMonitor(r.sock, appliance.ControlRequest{}); err == nil || err.Error() != want {
		t.Errorf("monitor 17: got %v, want %q", err, want)
	}
	if out := r.status("lagg0", false); !strings.HasPrefix(out, "lagg0: ") {
		t.Errorf("status with 16 monitors: got %q", out)
	}
	ms[0].Close()
	var err error
	for range 100 {
		var m *appliance.MonitorStream
		if m, err = appliance.StartMonitor(r.sock, appliance.ControlRequest{}); err == nil {
			m.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("monitor after one ended: %v", err)
	}
}
