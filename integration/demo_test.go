package integration

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/lab"
)

// TestDemo runs `ulagg demo`, the README's self-contained demo, as a user
// would: every step passes, it reports failover from a far-end cable pull
// in milliseconds (the carrier poller; Linux's own link event for such a
// NIC-like veth comes up to a second later), and it leaves no namespace
// behind.
func TestDemo(t *testing.T) {
	bin := buildULagg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "demo").CombinedOutput()
	text := string(out)
	if err != nil || !strings.Contains(text, "Done: every step passed.") {
		t.Fatalf("ulagg demo: %v\n%s", err, text)
	}
	m := regexp.MustCompile(`now transmitting on \S+: (\S+) from the far end going down to the first frame`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no far-end failover figure in the demo's output:\n%s", text)
	}
	took, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("far-end failover figure %q: %v", m[1], err)
	}
	t.Logf("measure: demo far-end carrier loss → first frame on the standby port: %v", took)
	if took > 500*time.Millisecond {
		t.Errorf("far-end failover took %v in the demo, want milliseconds (carrier poll every 10 ms)", took)
	}
	if !regexp.MustCompile(`its first frame went out \S+ after the cable returned`).MatchString(text) {
		t.Errorf("no pre-emption figure in the demo's output:\n%s", text)
	}
	nss, err := lab.Namespaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss {
		if strings.HasPrefix(ns, "ulaggdemo") {
			t.Errorf("the demo left namespace %s behind", ns)
		}
	}
}
