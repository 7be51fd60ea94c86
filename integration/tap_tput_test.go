package integration

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
)

// TestThroughputTAP measures one TCP flow each way over a lagg with one TAP
// port, the kernel host's address on the TAP itself: with host GSO (the
// TAP's virtio-net header and offloads) and with gso = false (water's plain
// fd, the path before offloads). Each cell is the median of three runs;
// CPU is this process's (gVisor and the kernel's syscalls on its behalf).
// The sanity bound asserted is GSO ≥ 2× no-GSO gVisor→kernel and ≥ 1.5×
// kernel→gVisor; the targets (≥ 1000 and ≥ 700 MB/s) are reported, not
// asserted, on a shared machine.
func TestThroughputTAP(t *testing.T) {
	cell, _ := cellDurations(t)
	lb := newLab(t)
	ns, err := lb.AddNS("tt")
	if err != nil {
		t.Fatal(err)
	}
	tap := testPrefix + "tt0"
	dirs := [2]string{"gVisor→kernel", "kernel→gVisor"}
	var med [2][2]float64 // [gso][k2g] MB/s
	for gi, gso := range []bool{false, true} {
		lc := laggConfig(config.ProtoFailover)
		lc.Ports = []config.Port{{Name: tap, Kind: "tap", Priority: 1000}}
		ap := startAppliance(t, lc, appOptions{netns: ns, disableGSO: !gso})
		if err := lab.Run("ip", "-n", ns, "addr", "add", hostIP+"/24", "dev", tap); err != nil {
			t.Fatal(err)
		}
		pingOK(t, ns, 2)
		for di, k2g := range []bool{false, true} {
			var runs, cpus []float64
			for range 3 {
				c0 := cpuTime()
				mbps := measureCell(t, gvisorSide(t, ap.a.Stack()), ns, k2g, 1, cell).mbps
				// Warm-up and teardown included: an upper bound.
				cpus = append(cpus, (cpuTime()-c0).Seconds()/(mbps*cell.Seconds()/1e3))
				runs = append(runs, mbps)
			}
			med[gi][di] = medianF(runs)
			t.Logf("measure: TAP %s gso=%v: %.0f MB/s median of %.0f MB/s, CPU %.1f s/GB median (%v per run)",
				dirs[di], gso, med[gi][di], runs, medianF(cpus), cell)
		}
		ap.a.Close()
	}
	for di, bound := range [2]float64{2, 1.5} {
		r := med[1][di] / med[0][di]
		t.Logf("measure: TAP %s GSO/no-GSO %.1f×", dirs[di], r)
		if r < bound {
			t.Errorf("TAP %s: GSO %.0f MB/s, no GSO %.0f MB/s: ratio %.1f, want ≥ %.1f", dirs[di], med[1][di], med[0][di], r, bound)
		}
	}
	t.Logf("measure: TAP targets gVisor→kernel ≥ 1000 MB/s: %v, kernel→gVisor ≥ 700 MB/s: %v", med[1][0] >= 1000, med[1][1] >= 700)
}

func medianF(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
