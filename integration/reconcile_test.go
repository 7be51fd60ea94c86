package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// Ports that come and go, on real interfaces: `ulagg run` starts with a
// configured port missing (degraded, with a warning), and while the kernel
// host streams through the lagg, ports are deleted (`ip link del`) and
// created again, and moved to another namespace and back. Each is shown
// <MISSING> while it is away and attached again, by rtnetlink, when its
// interface appears; the stream never breaks. --strict refuses to start
// instead.
func TestReconcilePortsComeAndGo(t *testing.T) {
	tp := newIfcTopo(t, 3)
	wm0, wm1, wm2 := tp.ports[0], tp.ports[1], tp.ports[2]
	other, err := tp.lab.AddNS("o")
	if err != nil {
		t.Fatal(err)
	}
	ip := func(args ...string) {
		t.Helper()
		if err := lab.Run(append([]string{"ip"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	// recreate makes port i's veth pair again and bridges its far end.
	recreate := func(i int) {
		t.Helper()
		if err := tp.lab.Veth(tp.ports[i], tp.app, tp.peers[i], tp.host); err != nil {
			t.Fatal(err)
		}
		ip("-n", tp.host, "link", "set", tp.peers[i], "master", ifcPrefix+"br")
	}
	ip("-n", tp.app, "link", "del", wm2) // missing at the start

	dir := t.TempDir()
	p := &ifcProc{bin: buildULagg(t), ns: tp.app, file: filepath.Join(dir, "ulagg.toml"), sock: filepath.Join(dir, "ulagg.sock")}
	toml := ifcServices(p.sock) + fmt.Sprintf(`
[[lagg]]
name = "lagg0"
proto = "failover"
addresses = ["%s/24"]
mac = "02:00:00:00:0a:01"
[[lagg.port]]
name = %q
priority = 1000
[[lagg.port]]
name = %q
priority = 2000
[[lagg.port]]
name = %q
priority = 3000
`, ifcLaggIP, wm0, wm1, wm2)
	if err := os.WriteFile(p.file, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}

	// --strict refuses to start.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	strict := exec.CommandContext(ctx, "ip", "netns", "exec", tp.app, p.bin, "run", "-c", p.file, "--strict")
	strict.Stdout, strict.Stderr = &out, &out
	var ee *exec.ExitError
	if err := strict.Run(); !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out.String(), wm2) || !strings.Contains(out.String(), "ip -br link") {
		t.Fatalf("ulagg run --strict with %s missing: %v\n%s", wm2, err, out.String())
	}

	// Without it, ulagg starts degraded.
	p.start(t)
	missing := func(port string, pri int) string { return fmt.Sprintf("\t\t%s pri=%d flags=0x0 <MISSING>", port, pri) }
	waitLine := func(what, line string, present bool) {
		t.Helper()
		var st string
		if !testkit.Poll(10*time.Second, func() bool {
			st = p.status(t, "-v")
			return strings.Contains(st, line+"\n") == present
		}) {
			t.Fatalf("%s: status %s %q within 10s:\n%s", what, map[bool]string{true: "lacks", false: "still has"}[present], line, st)
		}
	}
	waitLine("start", missing(wm2, 3000), true)
	if log := p.out.String(); !strings.Contains(log, "starting degraded") || !strings.Contains(log, "ip -br link") {
		t.Errorf("no warning at the degraded start:\n%s", ifcTail(log, 4096))
	}
	p.waitStatus(t, 10*time.Second, ifcRunning+"1500")
	ifcPingOK(t, tp, 3)
	s := ifcStartStream(t, tp, 11)
	s.progress(t, 1<<20, "start")

	// The missing port's interface appears.
	recreate(2)
	waitLine(wm2+" created", missing(wm2, 3000), false)
	waitLine(wm2+" created", "\t\t"+wm2+" pri=3000 flags=0xc<ACTIVE,COLLECTING>", true)
	s.progress(t, 1<<20, wm2+" created")

	// The transmitting port is deleted, then created again.
	start := time.Now()
	ip("-n", tp.app, "link", "del", wm0)
	waitLine(wm0+" deleted", missing(wm0, 1000), true)
	testkit.WaitFor(t, 10*time.Second, wm1+" transmitting", func() bool {
		return strings.Contains(p.status(t, "-v"), "\t\ttx port="+wm1+", ")
	})
	s.progress(t, 1<<20, wm0+" deleted")
	recreate(0)
	waitLine(wm0+" created again", missing(wm0, 1000), false)
	testkit.WaitFor(t, 10*time.Second, wm0+" transmitting again", func() bool {
		return strings.Contains(p.status(t, "-v"), "\t\ttx port="+wm0+", ")
	})
	t.Logf("measure: %s deleted and created again: back transmitting after %v", wm0, time.Since(start))
	s.progress(t, 1<<20, wm0+" created again")

	// A port moved to another namespace and back.
	ip("-n", tp.app, "link", "set", wm1, "netns", other)
	waitLine(wm1+" moved away", missing(wm1, 2000), true)
	s.progress(t, 1<<20, wm1+" moved away")
	ip("-n", other, "link", "set", wm1, "netns", tp.app)
	waitLine(wm1+" moved back", missing(wm1, 2000), false)
	waitLine(wm1+" moved back", "\t\t"+wm1+" pri=2000 flags=0xc<ACTIVE,COLLECTING>", true)
	s.progress(t, 1<<20, wm1+" moved back")
	t.Logf("measure: stream through every change: %d bytes intact", s.finish(t))

	// save keeps every configured port.
	if _, errOut, code := p.run(t, "save", "-s", p.sock); code != 0 {
		t.Fatalf("save: exit %d: %s", code, errOut)
	}
	saved, err := config.Load(p.file)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(saved.Lagg("lagg0").Ports); n != 3 {
		t.Errorf("saved %d ports, want 3: %+v", n, saved.Lagg("lagg0").Ports)
	}
	p.stop(t)
}
