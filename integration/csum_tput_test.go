package integration

import (
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
)

// TestChecksumThroughputUnvouched measures kernel→gVisor TCP through ulagg
// with one port when the kernel vouches for no checksum: transmit checksum
// offload is off on the host side of the veth (and so on the bridge), so
// every frame arrives MTU-sized with a full checksum and no
// TP_STATUS_CSUM_VALID, and the lagg verifies each in software. It is the
// worst case of the receive checksum check (with offload on, as in
// TestThroughput, the kernel vouches for every TCP frame and nothing is
// verified). It asserts nothing but a working transfer.
//
//	go test -count=1 -v -run TestChecksumThroughputUnvouched ./integration/ 2>&1 | grep measure:
func TestChecksumThroughputUnvouched(t *testing.T) {
	cell, _ := cellDurations(t)
	tp := newTopo(t, 1)
	for _, dev := range []string{tp.peers[0], tp.bridge} {
		if err := lab.Run("ip", "netns", "exec", tp.host, "ethtool", "-K", dev, "tx", "off"); err != nil {
			t.Fatal(err)
		}
	}
	ap := startAppliance(t, laggConfig(config.ProtoFailover, tp.ports...), appOptions{netns: tp.lag})
	pingOK(t, tp.host, 2)
	port := tp.ports[0]
	var best float64
	for range 3 {
		before := portCounters(t, ap.l, port)
		start := time.Now()
		mbps := measureCell(t, gvisorSide(t, ap.a.Stack()), tp.host, true, 1, cell).mbps
		after := portCounters(t, ap.l, port)
		frames := after.RxFrames - before.RxFrames
		avg := 0.0
		if frames > 0 {
			avg = float64(after.RxBytes-before.RxBytes) / float64(frames)
		}
		t.Logf("measure: throughput kernel→gVisor, ulagg 1 port, host veth tx offload off (every frame verified in software): %.0f MB/s; %d frames of %.0f B on average in %v, checksum drops %d",
			mbps, frames, avg, time.Since(start).Round(time.Millisecond), after.Drops["checksum"])
		best = max(best, mbps)
		if mbps <= 0 {
			t.Errorf("no data moved")
		}
	}
	t.Logf("measure: throughput kernel→gVisor unvouched, best of 3: %.0f MB/s", best)
}
