package dhcp_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the client embeddable: gVisor, the dhcpv4 library,
// package stack and internal/clock, none of the appliance's dependencies.
func TestDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := []string{"gvisor.dev/gvisor/", "github.com/insomniacslk/dhcp/", "github.com/u-root/uio/",
		"github.com/josharian/native", "github.com/pierrec/lz4/", "golang.org/x/", "github.com/google/btree",
		"github.com/ulagg/ulagg/stack", "github.com/ulagg/ulagg/stack/dhcp", "github.com/ulagg/ulagg/internal/clock"}
	for _, d := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			if d == a || strings.HasPrefix(d, a) && strings.HasSuffix(a, "/") || d == strings.TrimSuffix(a, "/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("package dhcp depends on %s", d)
		}
	}
}
