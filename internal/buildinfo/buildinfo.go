// Package buildinfo says which ulagg this is: the module version, the VCS
// revision and the Go version, from the build information the go command
// embeds, for `ulagg version` and the ulagg_build_info metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Version, if set at link time (-ldflags "-X
// github.com/ulagg/ulagg/internal/buildinfo.Version=v1.2.3"), overrides the
// module version: a release build from a tarball has no VCS to stamp.
var Version string

// Info is what the binary knows about its own build.
type Info struct {
	Version   string // module version: a tag, a pseudo-version, or "(devel)"
	Revision  string // VCS revision; "" when built without VCS information
	Time      string // commit time (RFC 3339); "" without VCS information
	Modified  bool   // the work tree had uncommitted changes
	GoVersion string // e.g. go1.27.3
}

// Read returns the running binary's build information. It never fails: a
// binary without any (a test binary, -buildvcs=false) reads "(devel)" and
// no revision.
func Read() Info {
	in := Info{Version: "(devel)", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			in.Version = v
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if Version != "" {
		in.Version = Version
	}
	return in
}

// ShortRevision is the first 12 characters of the revision, "+dirty" when
// the work tree was modified, or "unknown".
func (in Info) ShortRevision() string {
	if in.Revision == "" {
		return "unknown"
	}
	r := in.Revision
	if len(r) > 12 {
		r = r[:12]
	}
	if in.Modified {
		r += "+dirty"
	}
	return r
}

// String is the one line `ulagg version` prints, e.g.
// "ulagg v0.3.0 (rev 0123456789ab, 2026-11-30T10:00:00Z) go1.27.3 linux/amd64".
func (in Info) String() string {
	var b strings.Builder
	b.WriteString("ulagg " + in.Version)
	if in.Revision == "" {
		// GOFLAGS=-buildvcs=false, a build outside a git work tree, or go run.
		b.WriteString(" (no VCS information: build with -buildvcs=true in a git work tree)")
	} else {
		b.WriteString(" (rev " + in.ShortRevision())
		if in.Time != "" {
			b.WriteString(", " + in.Time)
		}
		b.WriteString(")")
	}
	b.WriteString(" " + in.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH)
	return b.String()
}
