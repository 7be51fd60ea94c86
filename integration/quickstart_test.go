package integration

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/lab"
)

// TestQuickstartScript runs the README's quick start,
// examples/quickstart.sh, as a newcomer would (with the binary built
// once for the tests and this run's namespace prefix): TCP echo over the
// preferred port, again after pulling it, and everything removed after.
func TestQuickstartScript(t *testing.T) {
	requireRoot(t)
	bin := buildULagg(t)
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", t.Name(), os.Getpid())
	prefix := fmt.Sprintf("%s%04x", testPrefix, h.Sum32()&0xffff)
	labPrefixes.Store(prefix, true)
	t.Cleanup(func() { // the script's own trap does this; in case it was killed
		for _, ns := range []string{prefix + "-host", prefix + "-lagg"} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../examples/quickstart.sh")
	cmd.Env = append(os.Environ(), "ULAGG="+bin, "ULAGG_QS_PREFIX="+prefix)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("examples/quickstart.sh: %v\n%s", err, out)
	}
	t.Logf("measure: quickstart.sh ran in %v", time.Since(start).Round(time.Millisecond))
	want := []string{
		"answer: hello over " + prefix + "0",
		"answer: hello over " + prefix + "1",
		prefix + "1 pri=2000 flags=0x1c<ACTIVE,COLLECTING,DISTRIBUTING>",
		"cleaned up",
	}
	if _, err := exec.LookPath("curl"); err == nil {
		want = append(want, `ulagg_lagg_link_up{lagg="lagg0"} 1`)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("examples/quickstart.sh printed no %q:\n%s", w, out)
		}
	}
	nss, err := lab.Namespaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss {
		if strings.HasPrefix(ns, prefix) {
			t.Errorf("namespace %s left behind", ns)
		}
	}
}
