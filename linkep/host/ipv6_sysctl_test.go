package host_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/linkep/host"
)

// v6Sysctl reads or (with set) writes the port interface's disable_ipv6
// inside the port's namespace.
func v6Sysctl(t *testing.T, e *afEnv, set string) string {
	t.Helper()
	path := "/proc/sys/net/ipv6/conf/" + e.pname + "/disable_ipv6"
	var got string
	htDo(t, e.port, func() error {
		if set != "" {
			return os.WriteFile(path, []byte(set), 0)
		}
		b, err := os.ReadFile(path)
		got = strings.TrimSpace(string(b))
		return err
	})
	return got
}

// TestIPv6DisabledWhileMember: Join turns the kernel's IPv6 off on the
// port's interface (in the port's namespace), Leave puts it back; an
// interface whose IPv6 was off already stays off after Leave.
func TestIPv6DisabledWhileMember(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	dir := t.TempDir()
	v6Sysctl(t, e, "0")
	p := stOpen(t, e, dir, nil)
	if got := v6Sysctl(t, e, ""); got != "0" {
		t.Fatalf("disable_ipv6 before Join = %s, want 0 (opening alone changes nothing)", got)
	}
	p.Join("lagg0")
	if got := v6Sysctl(t, e, ""); got != "1" {
		t.Fatalf("disable_ipv6 while a member = %s, want 1", got)
	}
	b, err := os.ReadFile(host.StatePath(p))
	if err != nil {
		t.Fatalf("no state file while IPv6 is disabled: %v", err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil || st["disabled_ipv6"] != true {
		t.Errorf("state file %s (%v), want disabled_ipv6 true", b, err)
	}
	p.Leave()
	if got := v6Sysctl(t, e, ""); got != "0" {
		t.Errorf("disable_ipv6 after Leave = %s, want 0", got)
	}
	p.Close()

	// Off before: not ours, stays off.
	v6Sysctl(t, e, "1")
	p = stOpen(t, e, dir, nil)
	p.Join("lagg0")
	p.Leave()
	p.Close()
	if got := v6Sysctl(t, e, ""); got != "1" {
		t.Errorf("disable_ipv6 after Leave of a port whose IPv6 was off = %s, want 1", got)
	}
	if f := stStateFiles(t, dir); len(f) != 0 {
		t.Errorf("files left under %s/host: %v", dir, f)
	}
}

// TestIPv6RestoredOnCloseAndAfterCrash: a port closed while still a member
// puts the kernel's IPv6 back; one that dies (kill -9) leaves it off and
// the state file says so, and the next port on the interface turns it on
// before reading anything.
func TestIPv6RestoredOnCloseAndAfterCrash(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	dir := t.TempDir()
	v6Sysctl(t, e, "0")
	p := stOpen(t, e, dir, nil)
	p.Join("lagg0")
	p.Close()
	if got := v6Sysctl(t, e, ""); got != "0" {
		t.Fatalf("disable_ipv6 after Close without Leave = %s, want 0", got)
	}

	p = stOpen(t, e, dir, nil)
	p.Join("lagg0")
	host.Abandon(p)
	if got := v6Sysctl(t, e, ""); got != "1" {
		t.Fatalf("disable_ipv6 after the crash = %s, want 1 (what a crash leaves)", got)
	}
	log := &stLog{}
	p2 := stOpen(t, e, dir, log)
	if got := v6Sysctl(t, e, ""); got != "0" {
		t.Errorf("disable_ipv6 once the next port opened = %s, want 0 (put back)", got)
	}
	if n := log.lines("disable_ipv6=1→0"); n != 1 {
		t.Errorf("%d recovery lines naming disable_ipv6, want 1:\n%s", n, log)
	}
	p2.Close()
	if f := stStateFiles(t, dir); len(f) != 0 {
		t.Errorf("files left under %s/host: %v", dir, f)
	}
}
