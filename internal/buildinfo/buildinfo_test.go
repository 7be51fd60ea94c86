package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestStringWithoutVCS(t *testing.T) {
	in := Info{Version: "(devel)", GoVersion: "go1.27.3"}
	got := in.String()
	for _, want := range []string{"ulagg (devel)", "no VCS information", "go1.27.3 " + runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(got, want) {
			t.Errorf("got %q, want it to contain %q", got, want)
		}
	}
	if r := in.ShortRevision(); r != "unknown" {
		t.Errorf("ShortRevision: got %q, want unknown", r)
	}
}

func TestStringWithVCS(t *testing.T) {
	in := Info{Version: "v0.0.0-20261130100000-0123456789ab+dirty", Revision: "0123456789abcdef0123", Time: "2026-11-30T10:00:00Z", Modified: true, GoVersion: "go1.27.3"}
	want := "ulagg v0.0.0-20261130100000-0123456789ab+dirty (rev 0123456789ab+dirty, 2026-11-30T10:00:00Z) go1.27.3 " + runtime.GOOS + "/" + runtime.GOARCH
	if got := in.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestReadOverride(t *testing.T) {
	defer func(v string) { Version = v }(Version)
	Version = "v9.9.9"
	in := Read()
	if in.Version != "v9.9.9" {
		t.Errorf("Version: got %q, want the link-time v9.9.9", in.Version)
	}
	if in.GoVersion != runtime.Version() {
		t.Errorf("GoVersion: got %q, want %q", in.GoVersion, runtime.Version())
	}
}
