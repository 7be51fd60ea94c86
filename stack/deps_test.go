package stack

import (
	"os/exec"
	"strings"
	"testing"
)

// applianceDeps are what the appliance runtime needs and an embedder of
// this package must not be made to build: Prometheus, TOML, gopacket, the
// configuration, and the appliance itself.
var applianceDeps = []string{
	"github.com/prometheus",
	"github.com/BurntSushi/toml",
	"github.com/gopacket",
	"github.com/ulagg/ulagg/config",
	"github.com/ulagg/ulagg/stack/appliance",
}

// TestNoApplianceDeps fails if package stack depends, directly or not, on
// any of applianceDeps, so the cut between the embedder API and the
// appliance cannot regress silently.
func TestNoApplianceDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("%s list -deps: %v\n%s", goBin, err, ee.Stderr)
		}
		t.Fatalf("%s list -deps: %v", goBin, err)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || deps[len(deps)-1] != "github.com/ulagg/ulagg/stack" {
		t.Fatalf("go list -deps did not list package stack last; got:\n%s", out)
	}
	for _, d := range deps {
		for _, bad := range applianceDeps {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("package stack depends on %s (%s is for the appliance only)", d, bad)
			}
		}
	}
}
