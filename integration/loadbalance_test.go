package integration

import (
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
)

// TestLoadBalanceSpread: 48 verified TCP flows from a 2-port loadbalance
// lagg to the kernel host are spread over both ports: each port carries at
// least 25% of the bytes transmitted (per-port TxBytes counters), and every
// flow arrives intact.
func TestLoadBalanceSpread(t *testing.T) {
	const (
		flows   = 48
		perFlow = 4 << 20
	)
	tp := newTopo(t, 2)
	ap := startAppliance(t, laggConfig(config.ProtoLoadBalance, tp.ports...), appOptions{netns: tp.lag})
	pingOK(t, tp.host, 3)

	// The host's side: verify each flow; the first 8 bytes name its seed.
	sink := acceptFlows(t, tp.host, flows, 30*time.Second)
	before := ap.l.Status()
	start := time.Now()
	sendFlows(ap, sink.port, flows, 1000, perFlow)(t)
	sink.finish(t, flows, 1000, perFlow, 30*time.Second)
	elapsed := time.Since(start)

	after := ap.l.Status()
	var total uint64
	share := map[string]uint64{}
	for _, p := range after.Ports {
		share[p.Name] = p.Counters.TxBytes - before.Port(p.Name).Counters.TxBytes
		total += share[p.Name]
	}
	t.Logf("measure: loadbalance %d flows × %d MiB ulagg→kernel: %.0f MB/s; tx %s %.1f%%, %s %.1f%%",
		flows, perFlow>>20, float64(sink.received.Load())/1e6/elapsed.Seconds(),
		tp.ports[0], 100*float64(share[tp.ports[0]])/float64(max(total, 1)),
		tp.ports[1], 100*float64(share[tp.ports[1]])/float64(max(total, 1)))
	if total < flows*perFlow {
		t.Errorf("the ports transmitted %d bytes in all, less than the %d sent", total, flows*perFlow)
	}
	for _, p := range tp.ports {
		if share[p]*4 < total {
			t.Errorf("port %s transmitted %d of %d bytes (%.1f%%), want ≥ 25%%", p, share[p], total, 100*float64(share[p])/float64(total))
		}
	}
}
