package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// transferSize is the size of each verified transfer in the failover tests.
const transferSize = 256 << 20

// TestFailoverAFPacket: failover over 2 and 3 AF_PACKET ports answers ping
// and TCP echo, and 256 MiB transfers in each direction survive pulling the
// transmitting port (twice in a row with 3 ports) with every byte intact and
// no reset; each pull moves transmission to the next port by priority.
func TestFailoverAFPacket(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ports int
	}{
		{"2ports", 2},
		{"3ports", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t, tc.ports)
			ap := startAppliance(t, laggConfig(config.ProtoFailover, tp.ports...), appOptions{netns: tp.lag})
			failoverScenario(t, ap, tp.host, tp.lag, tp.ports)
		})
	}
}

// failoverScenario is the failover test proper, for any kind of port:
// ports are in priority order and live in namespace portNS; the kernel host
// is hostNS.
func failoverScenario(t *testing.T, ap *app, hostNS, portNS string, ports []string) {
	if got := ap.l.Status().TxPort; got != ports[0] {
		t.Fatalf("transmitting on %q, want %s (best priority)", got, ports[0])
	}
	pingOK(t, hostNS, 5)
	echoOK(t, hostNS, 1<<20)
	for i, dir := range []string{kernelToUlagg, ulaggToKernel} {
		t.Run(strings.ReplaceAll(dir, "→", "_to_"), func(t *testing.T) {
			retx0 := ap.a.Stack().Stats().TCP.Retransmits.Value()
			kretx0 := kernelRetrans(hostNS)
			tr := startTransfer(t, ap.a.Stack(), hostNS, dir, transferSize, uint64(100+i))
			var samples []failoverSample
			for k := 1; k < len(ports); k++ {
				tr.WaitReceived(t, transferSize*int64(k)/int64(len(ports)), 60*time.Second)
				if tr.Received() >= transferSize {
					t.Fatalf("the transfer ended before pull %d", k)
				}
				s := pullActive(t, portNS, ap.l)
				if s.to != ports[k] {
					t.Errorf("pulled %s: now transmitting on %s, want %s", s.from, s.to, ports[k])
				}
				samples = append(samples, s)
			}
			r := tr.Wait(t, 120*time.Second)
			for _, s := range samples {
				t.Logf("measure: failover %s %s→%s mid-transfer: carrier-loss→first-frame %v (Status.LastFailover), link-down-request→first-frame seen %v",
					dir, s.from, s.to, s.internal.Round(time.Microsecond), s.external.Round(time.Microsecond))
				if s.internal > time.Second {
					t.Errorf("failover %s→%s took %v", s.from, s.to, s.internal)
				}
			}
			t.Logf("measure: failover transfer %s %d MiB over %d ports, %d pulls: %.0f MB/s in %v, intact; retransmits gVisor %d, kernel %s",
				dir, transferSize>>20, len(ports), len(samples), r.MBps(), r.Elapsed.Round(time.Millisecond),
				ap.a.Stack().Stats().TCP.Retransmits.Value()-retx0, kretxDelta(kretx0, kernelRetrans(hostNS)))
			restorePorts(t, portNS, ap.l, ports[0], ports[:len(ports)-1]...)
		})
	}
	pingOK(t, hostNS, 5)
	echoOK(t, hostNS, 1<<20)
}

// TestFailoverLatency pulls the transmitting port of a 2-port failover lagg
// 10 times while verified streams run both ways, and puts it back each
// time. The median time from carrier loss to the first frame on the other
// port must be at most 10 ms, pre-emption at most 150 ms, and both streams
// must end intact.
func TestFailoverLatency(t *testing.T) {
	const pulls = 10
	tp := newTopo(t, 2)
	ap := startAppliance(t, laggConfig(config.ProtoFailover, tp.ports...), appOptions{netns: tp.lag})
	pingOK(t, tp.host, 3)
	in := startTransfer(t, ap.a.Stack(), tp.host, kernelToUlagg, -1, 201)
	out := startTransfer(t, ap.a.Stack(), tp.host, ulaggToKernel, -1, 202)
	in.WaitReceived(t, 8<<20, 30*time.Second)
	out.WaitReceived(t, 8<<20, 30*time.Second)
	var internal, external, preempt, preemptReported []time.Duration
	for i := range pulls {
		s := pullActive(t, tp.lag, ap.l)
		if s.from != tp.ports[0] || s.to != tp.ports[1] {
			t.Errorf("pull %d: %s→%s, want %s→%s", i, s.from, s.to, tp.ports[0], tp.ports[1])
		}
		internal, external = append(internal, s.internal), append(external, s.external)
		// Let the streams run on the standby port for a moment.
		time.Sleep(50 * time.Millisecond)
		last := ap.l.Status().LastFailover
		up := time.Now()
		restorePorts(t, tp.lag, ap.l, tp.ports[0], tp.ports[0])
		preempt = append(preempt, time.Since(up))
		_ = testkit.Poll(time.Second, func() bool { return ap.l.Status().LastFailover != last })
		preemptReported = append(preemptReported, ap.l.Status().LastFailover)
		time.Sleep(50 * time.Millisecond)
	}
	in.Stop()
	out.Stop()
	rin, rout := in.Wait(t, 60*time.Second), out.Wait(t, 60*time.Second)
	med := median(internal)
	t.Logf("measure: failover carrier-loss→first-frame (Status.LastFailover) median=%v over %d pulls: %s",
		med.Round(time.Microsecond), pulls, durations(internal))
	t.Logf("measure: failover link-down-request→first-frame-seen median=%v over %d pulls: %s",
		median(external).Round(time.Microsecond), pulls, durations(external))
	t.Logf("measure: failover pre-emption, link-up request→transmitting on %s again, median=%v: %s",
		tp.ports[0], median(preempt).Round(time.Microsecond), durations(preempt))
	t.Logf("measure: failover pre-emption as Status.LastFailover reports it, median=%v: %s",
		median(preemptReported).Round(time.Microsecond), durations(preemptReported))
	t.Logf("measure: failover latency streams: kernel→ulagg %d MB, ulagg→kernel %d MB, both intact, %d failovers",
		rin.Received/1e6, rout.Received/1e6, ap.l.Status().Failovers)
	if med > 10*time.Millisecond {
		t.Errorf("failover median %v, want ≤ 10ms", med)
	}
	// The port is up on IFF_UP|IFF_LOWER_UP, not IFF_RUNNING, which the
	// kernel sets up to a second later (~920 ms median here before).
	if m := median(preempt); m > 150*time.Millisecond {
		t.Errorf("pre-emption median %v, want ≤ 150ms", m)
	}
}

// kernelRetrans reads TcpRetransSegs in namespace ns with nstat, or -1.
func kernelRetrans(ns string) int64 {
	out, err := lab.Output("ip", "netns", "exec", ns, "nstat", "-asz", "TcpRetransSegs")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "TcpRetransSegs" {
			var v int64
			if _, err := fmt.Sscan(f[1], &v); err == nil {
				return v
			}
		}
	}
	return -1
}

func kretxDelta(a, b int64) string {
	if a < 0 || b < 0 {
		return "n/a (no nstat)"
	}
	return fmt.Sprint(b - a)
}
