package integration

import (
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// TestFailoverTAP is TestFailoverAFPacket over two TAP devices that ulagg
// creates in a test namespace; the kernel host is a bridge over the TAPs
// in that same namespace. When the appliance closes, the TAPs are gone.
func TestFailoverTAP(t *testing.T) {
	lb := newLab(t)
	ns, err := lb.AddNS("t")
	if err != nil {
		t.Fatal(err)
	}
	taps := []string{testPrefix + "t0", testPrefix + "t1"}
	lc := laggConfig(config.ProtoFailover)
	for i, name := range taps {
		lc.Ports = append(lc.Ports, config.Port{Name: name, Kind: "tap", Priority: uint16(1000 * (i + 1))})
	}
	ap := startAppliance(t, lc, appOptions{netns: ns})
	for _, name := range taps {
		if li := mustLink(t, ns, name); li.Kind != "tun" || !li.AdminUp {
			t.Fatalf("%s: kind %q admin-up %v, want a TAP that is up", name, li.Kind, li.AdminUp)
		}
	}
	// The TAPs exist only now: bridge them to the host's address.
	if err := lb.Bridge(ns, testPrefix+"br", hostIP+"/24", taps...); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "ping through the TAP bridge", func() bool {
		r, err := lab.Ping(ns, laggAddr, 1, 0, 200*time.Millisecond)
		return err == nil && r.Received == 1
	})
	failoverScenario(t, ap, ns, ns, taps)

	ap.a.Close()
	for _, name := range taps {
		if _, err := lab.Link(ns, name); err == nil {
			t.Errorf("TAP %s still exists after the appliance closed", name)
		}
	}
}
