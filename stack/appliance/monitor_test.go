package appliance_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/testkit"
)

// TestLinkMonitorStatus: `ulagg ifconfig lagg0 laggmonitor ...` through the
// control socket starts the link monitor; the status text has its line
// and each port's verdict, and the JSON matches the schema. The peer is a
// failover lagg, not a switch: it answers every probe through its one
// transmitting wire, so the port on the other wire never hears its own
// replies and goes monitor-down — the case per-port probing exists for.
func TestLinkMonitorStatus(t *testing.T) {
	r := newCtlRig(t, "", "failover", "wm0", "wm1")
	r.mustIfconfig("lagg0 create",
		"lagg0 laggproto failover laggport wm0 pri 1000 laggport wm1 pri 2000 192.168.1.1 netmask 255.255.255.0",
		"lagg0 laggmonitor arp "+peerAddr+" interval 50 missed 2")
	reason := "arp " + peerAddr + " unanswered 2×"
	var text string
	testkit.WaitFor(t, 5*time.Second, "wm1 monitor-down", func() bool {
		text = r.status("lagg0", true)
		return strings.Contains(text, "wm1 pri=2000 flags=0x0 monitor down ("+reason+")")
	})
	for _, want := range []string{
		"\t\tlaggmonitor: arp " + peerAddr + " interval 50ms missed 2 validate all require any\n",
		"\t\twm0 pri=1000 flags=0x1c<ACTIVE,COLLECTING,DISTRIBUTING>\n",
		"\t\t\tmonitor up, missed 0, failures 0, probes ",
		"\t\t\tmonitor down (" + reason + "), missed ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ifconfig -v: no %q in:\n%s", want, text)
		}
	}
	all := compileSchema(t, "status.schema.json")
	for _, verbose := range []bool{false, true} {
		js := r.jsonStatus("lagg0", verbose)
		validateJSON(t, all, "ifconfig --json", js)
		for _, want := range []string{`"interval_ms": 50`, `"reason": "` + reason + `"`} {
			if !strings.Contains(string(js), want) {
				t.Errorf("ifconfig --json (verbose %v): no %s in:\n%s", verbose, want, js)
			}
		}
	}
	r.mustIfconfig("lagg0 -laggmonitor")
	testkit.WaitFor(t, 5*time.Second, "wm1 back without the monitor", func() bool {
		text = r.status("lagg0", false)
		return !strings.Contains(text, "monitor") && strings.Contains(text, "wm1 pri=2000 flags=0xc<ACTIVE,COLLECTING>")
	})
}
