package host_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/host"
)

// TestOwnerSecondOpenRefused: an interface has one owner. A second open,
// through either kind or the registry, even with another runtime directory,
// is refused with an error naming the owner's pid; nothing changes on the
// interface; once the owner closes, the interface opens again. (The
// integration test TestOwnerSecondProcess does the same across processes.)
func TestOwnerSecondOpenRefused(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := stOpen(t, e, t.TempDir(), nil)
	p.Join("lagg0")
	if err := p.SetPortMTU(9000); err != nil {
		t.Fatal(err)
	}
	pid := fmt.Sprintf("pid %d", os.Getpid())
	for _, dir := range []string{"", t.TempDir()} {
		q, err := linkep.Open("afpacket", e.pname, linkep.OpenOptions{Netns: e.port.name, RuntimeDir: dir})
		if err == nil {
			q.Close()
			t.Fatalf("a second open of %s succeeded", e.pname)
		}
		var owned *host.OwnedError
		if !errors.As(err, &owned) || owned.PID != os.Getpid() {
			t.Errorf("second open: %v (%T), want an OwnedError naming pid %d", err, err, os.Getpid())
		}
		if !strings.Contains(err.Error(), pid) || !strings.Contains(err.Error(), e.pname) {
			t.Errorf("second open: %q does not name the interface and %s", err, pid)
		}
	}
	if got := stLinkOf(t, e, e.pname); got != (stLink{mtu: 9000, up: true}) {
		t.Errorf("after the refused opens: %+v, want the owner's MTU 9000 and up", got)
	}
	p.Close()
	q := stOpen(t, e, t.TempDir(), nil)
	if q.OriginalMTU() != 1500 {
		t.Errorf("reopened after the owner closed: OriginalMTU %d, want 1500", q.OriginalMTU())
	}
	q.Close()
}
