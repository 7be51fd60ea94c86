package host_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/host"
)

// TestMTUFightBounded: something outside changes a joined port's MTU 100
// times in a second. The port reverts it a bounded number of times (3 in
// 10 s), says once that it stops enforcing, leaves the foreign MTU alone
// meanwhile (MTUForeign), and after its back-off (shortened here) logs how
// many changes it let pass and puts the lagg's MTU back.
func TestMTUFightBounded(t *testing.T) {
	htLeakCheck(t)
	defer host.SetMTUEnforcement(3, 10*time.Second, 1500*time.Millisecond, 10*time.Second)()
	e := newAFEnv(t)
	log := &stLog{}
	p := stOpen(t, e, t.TempDir(), log)
	ev := htWatch(p)
	p.Join("lagg0")
	if err := p.SetPortMTU(1600); err != nil {
		t.Fatal(err)
	}
	l := e.port.link(t, e.pname)
	start := time.Now()
	const changes = 100
	for i := range changes {
		if err := e.port.nl.LinkSetMTU(l, 1400+i%2*100); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * time.Second / changes)))
	}
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond) // the last notifications
	reverts := log.lines("restoring it")
	total := log.lines("")
	events := 0
	for len(ev) > 0 {
		if (<-ev).Kind == linkep.MTUChanged {
			events++
		}
	}
	t.Logf("measure: %d foreign MTU changes in %v: %d reverts, %d log lines, %d MTUChanged events", changes, elapsed.Round(time.Millisecond), reverts, total, events)
	if reverts > 3 || reverts < 1 {
		t.Errorf("%d reverts, want 1..3", reverts)
	}
	if n := log.lines("keeps changing"); n != 1 {
		t.Errorf("%d lines saying the port stops enforcing, want 1", n)
	}
	if total > 5 {
		t.Errorf("%d log lines, want at most 5:\n%s", total, log)
	}
	if events > 3 {
		t.Errorf("%d MTUChanged events, want at most 3", events)
	}
	if !p.MTUForeign() {
		t.Errorf("MTUForeign() = false during the back-off")
	}
	if p.MTU() != 1600 {
		t.Errorf("the port's MTU %d, want the lagg's 1600", p.MTU())
	}

	// The back-off ends: the lagg's MTU is put back, once, and the
	// suppressed changes are counted in one line.
	htEventually(t, "enforcement to resume", func() bool { return log.lines("MTU enforcement resumes") == 1 })
	htEventually(t, "the lagg's MTU back", func() bool { return e.port.link(t, e.pname).Attrs().MTU == 1600 })
	if p.MTUForeign() {
		t.Errorf("MTUForeign() = true after the back-off")
	}
	line := ""
	for _, s := range strings.Split(log.String(), "\n") {
		if strings.Contains(s, "MTU enforcement resumes") {
			line = s
		}
	}
	if !strings.Contains(line, "suppressed=") || strings.Contains(line, "suppressed=0") {
		t.Errorf("the resume line does not count the suppressed changes: %q", line)
	}
	p.Close()
	if got := e.port.link(t, e.pname).Attrs().MTU; got != 1500 {
		t.Errorf("MTU %d after close, want the original 1500", got)
	}
}
