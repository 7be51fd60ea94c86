package host_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/linkep/host"
)

// stLog is a logger whose lines a test can count.
type stLog struct{ testkit.SyncBuffer }

// lines counts the lines holding s ("" counts every line).
func (l *stLog) lines(s string) int {
	n := 0
	for _, line := range strings.Split(strings.TrimSuffix(l.String(), "\n"), "\n") {
		if line != "" && strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func (l *stLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// stOpen opens e's port with its state files under dir.
func stOpen(t *testing.T, e *afEnv, dir string, log *stLog) *host.AFPacket {
	t.Helper()
	opts := host.AFPacketOptions{RuntimeDir: dir}
	if log != nil {
		opts.Logger = log.logger()
	}
	return e.open(t, opts)
}

type stLink struct {
	mtu int
	up  bool
}

func stLinkOf(t *testing.T, e *afEnv, name string) stLink {
	t.Helper()
	a := e.port.link(t, name).Attrs()
	return stLink{mtu: a.MTU, up: a.RawFlags&1 != 0} // IFF_UP
}

// stStateFiles lists the state files (and temporaries) under dir/host.
func stStateFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "host"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestStateRecoveredAfterCrash: a port that dies without closing (as with
// kill -9) leaves its interface at the lagg's MTU and admin up; the next
// port on it puts back the MTU and admin state first, so that it reads the
// real original values and its clean close restores them.
func TestStateRecoveredAfterCrash(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	dir := t.TempDir()
	before := stLinkOf(t, e, e.pname)
	if before.up || before.mtu != 1500 {
		t.Fatalf("unexpected starting state %+v, want MTU 1500, admin down", before)
	}

	p := stOpen(t, e, dir, nil)
	p.Join("lagg0")
	if err := p.SetPortMTU(9000); err != nil {
		t.Fatal(err)
	}
	path := host.StatePath(p)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no state file while the port changed its interface: %v", err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state file: %v\n%s", err, b)
	}
	if st["orig_mtu"] != 1500.0 || st["set_mtu"] != 9000.0 || st["brought_up"] != true || st["name"] != e.pname {
		t.Errorf("state file %s", b)
	}
	host.Abandon(p)
	if got := stLinkOf(t, e, e.pname); got != (stLink{mtu: 9000, up: true}) {
		t.Fatalf("after the crash: %+v, want MTU 9000 and up (what a crash leaves)", got)
	}

	log := &stLog{}
	p2 := stOpen(t, e, dir, log)
	if got := p2.OriginalMTU(); got != 1500 {
		t.Errorf("OriginalMTU after the crash = %d, want 1500 (the MTU before the first port)", got)
	}
	if n := log.lines("put back what a previous ulagg left"); n != 1 {
		t.Errorf("%d recovery log lines, want 1:\n%s", n, log)
	}
	if got := stLinkOf(t, e, e.pname); got != (stLink{mtu: 1500, up: true}) {
		t.Errorf("with the new port open: %+v, want MTU 1500, up", got)
	}
	p2.Join("lagg0")
	if err := p2.SetPortMTU(9000); err != nil {
		t.Fatal(err)
	}
	p2.Close()
	if got := stLinkOf(t, e, e.pname); got != before {
		t.Errorf("after a clean close: %+v, want the state before any port %+v", got, before)
	}
	if f := stStateFiles(t, dir); len(f) != 0 {
		t.Errorf("files left under %s/host: %v", dir, f)
	}
}

// TestStateOtherInterface: a state file whose interface was renamed is not
// applied (its values may not be this interface's), and is removed.
func TestStateOtherInterface(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	dir := t.TempDir()
	p := stOpen(t, e, dir, nil)
	p.Join("lagg0")
	if err := p.SetPortMTU(9000); err != nil {
		t.Fatal(err)
	}
	host.Abandon(p)
	// Same ifindex, another name.
	renamed := e.pname + "r"
	l := e.port.link(t, e.pname)
	if err := e.port.nl.LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	if err := e.port.nl.LinkSetName(l, renamed); err != nil {
		t.Fatal(err)
	}
	if err := e.port.nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	e.pname = renamed
	log := &stLog{}
	p2 := stOpen(t, e, dir, log)
	if got := p2.OriginalMTU(); got != 9000 {
		t.Errorf("OriginalMTU = %d, want 9000: the file was another name's", got)
	}
	if n := log.lines("state file of another interface removed"); n != 1 {
		t.Errorf("want one line about the other interface's file:\n%s", log)
	}
	p2.Close()
	if f := stStateFiles(t, dir); len(f) != 0 {
		t.Errorf("files left under %s/host: %v", dir, f)
	}
}

// TestStateRuntimeDirUnusable: a port that cannot record what it changes
// does not open.
func TestStateRuntimeDirUnusable(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, "relative/dir"} {
		p, err := host.OpenAFPacket(e.pname, host.AFPacketOptions{Netns: e.port.name, RuntimeDir: dir})
		if err == nil {
			p.Close()
			t.Errorf("runtime dir %q: the port opened", dir)
			continue
		}
		if !strings.Contains(err.Error(), "runtime dir") {
			t.Errorf("runtime dir %q: error %q does not name the runtime directory", dir, err)
		}
	}
	// Nothing was changed on the interface.
	if got := stLinkOf(t, e, e.pname); got.up {
		t.Errorf("the interface was set up by a port that did not open")
	}
}
