package lagg_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/lagg/lacp"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// These tests run two lagg endpoints (each under its own gVisor stack) over
// in-memory wires in real time, with the fast LACP rate. What needs the
// slow rate's 90 s timeout or the 60 s churn timer is shown on the engine's
// fake clock instead: lacp.TestSilentLoss ("slow both ways") and
// lacp.TestChurn in lagg/lacp/engine_test.go.

// lacpPair is two laggs running lacp at the fast rate over n wires; tweak
// changes each side's LACP options.
func lacpPair(t *testing.T, n int, tweak func(side int, o *lagg.LACPOptions)) *pair {
	t.Helper()
	return newPair(t, "lacp", n, func(side int, o *lagg.Options) {
		o.Logger = slog.New(slog.DiscardHandler)
		o.LACP.FastRate = true
		if tweak != nil {
			tweak(side, &o.LACP)
		}
	})
}

// lacpPairSpeeds is lacpPair over wires of the given speeds.
func lacpPairSpeeds(t *testing.T, speeds []uint64, tweak func(side int, o *lagg.LACPOptions)) *pair {
	t.Helper()
	id := nextID()
	var wires []*linkeptest.Wire
	var aPorts, bPorts []linkep.Port
	for i, s := range speeds {
		w := linkeptest.NewWire(fmt.Sprintf("a%d.%d", id, i), fmt.Sprintf("b%d.%d", id, i), mac(1, i), mac(2, i),
			linkeptest.WireOptions{SpeedMbps: s, Logger: discard})
		wires = append(wires, w)
		aPorts = append(aPorts, w.A)
		bPorts = append(bPorts, w.B)
	}
	return newPairWith(t, id, "lacp", wires, aPorts, bPorts, func(side int, o *lagg.Options) {
		o.LACP.FastRate = true
		if tweak != nil {
			tweak(side, &o.LACP)
		}
	})
}

// timeUntil polls cond every millisecond until it holds or d passes, and
// returns how long it took.
func timeUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// distributing counts l's ports flagged DISTRIBUTING.
func distributing(l *lagg.Lagg) int {
	n := 0
	for _, p := range l.Status().Ports {
		if p.Flags&lagg.PortDistributing != 0 {
			n++
		}
	}
	return n
}

// isDistributing reports whether port name of l is flagged DISTRIBUTING.
func isDistributing(l *lagg.Lagg, name string) bool {
	st := l.Status()
	ps := st.Port(name)
	return ps != nil && ps.Flags&lagg.PortDistributing != 0
}

// lacpPort returns the LACP state of port name of l.
func lacpPort(t *testing.T, l *lagg.Lagg, name string) lagg.LACPPortStatus {
	t.Helper()
	ps := portStatus(t, l, name)
	if ps.LACP == nil {
		t.Fatalf("port %s: no LACP status", name)
	}
	return *ps.LACP
}

// dataFrames is what port name of l sent besides LACP's own frames.
func dataFrames(t *testing.T, l *lagg.Lagg, name string) uint64 {
	t.Helper()
	ps := portStatus(t, l, name)
	if ps.LACP == nil {
		return ps.Counters.TxFrames
	}
	return ps.Counters.TxFrames - ps.LACP.Counters.LACPDUsTx - ps.LACP.Counters.MarkerResponseTx
}

const fullState = lacp.StateActivity | lacp.StateTimeout | lacp.StateAggregation |
	lacp.StateSync | lacp.StateCollecting | lacp.StateDistributing

// TestLACPNegotiatesAndCarries: 2 and 4 ports reach DISTRIBUTING on both
// sides in under a second, with the partner's identity and full state
// recorded, and TCP crosses.
func TestLACPNegotiatesAndCarries(t *testing.T) {
	for _, n := range []int{2, 4} {
		t.Run(fmt.Sprintf("%dports", n), func(t *testing.T) {
			p := lacpPair(t, n, nil)
			took := timeUntil(t, time.Second, "all ports distributing", func() bool {
				return distributing(p.a.l) == n && distributing(p.b.l) == n
			})
			t.Logf("measure: in-process lacp %d ports: link up to all distributing %v", n, took)
			st := p.a.l.Status()
			if !st.Up {
				t.Errorf("lagg A: got Up false, want true")
			}
			if st.LACP == nil || string(st.LACP.Partner.System[:]) != string(p.b.l.LinkAddress()) {
				t.Fatalf("partner: got %+v, want system %s", st.LACP, p.b.l.LinkAddress())
			}
			if st.LACP.Distributing != n || st.LACP.Active == 0 {
				t.Errorf("LACP status: got %d distributing, active aggregator %d; want %d, non-zero", st.LACP.Distributing, st.LACP.Active, n)
			}
			// Both sides' last PDUs may still be in flight; give them a moment.
			waitFor(t, 2*time.Second, "full actor and partner state on every port", func() bool {
				for i := range n {
					ps := lacpPort(t, p.a.l, p.portA(i))
					if ps.Actor.State != fullState || ps.Partner.State != fullState {
						return false
					}
				}
				return true
			})
			for i := range n {
				ps := lacpPort(t, p.a.l, p.portA(i))
				if ps.Mux != "DISTRIBUTING" || ps.Rx != "CURRENT" || ps.Selected != "selected" {
					t.Errorf("port %s: got mux %s rx %s sel %s", p.portA(i), ps.Mux, ps.Rx, ps.Selected)
				}
				if ps.ActorChurn != "NO_CHURN" || ps.PartnerChurn != "NO_CHURN" {
					t.Errorf("port %s: got churn actor %s partner %s, want NO_CHURN", p.portA(i), ps.ActorChurn, ps.PartnerChurn)
				}
				if ps.Counters.LACPDUsRx == 0 || ps.Counters.LACPDUsTx == 0 {
					t.Errorf("port %s: counters %+v, want LACPDUs both ways", p.portA(i), ps.Counters)
				}
			}
			listenEcho(t, p.b, 7)
			echo(t, p.a, p.b, 7, bytes.Repeat([]byte("x"), 100000))
		})
	}
}

// TestLACPSpreadsFlows: many TCP flows over a 2-port aggregation use both
// ports in both directions.
func TestLACPSpreadsFlows(t *testing.T) {
	p := lacpPair(t, 2, nil)
	timeUntil(t, time.Second, "distributing", func() bool { return distributing(p.a.l) == 2 && distributing(p.b.l) == 2 })
	beforeA, beforeB := p.a.l.Status(), p.b.l.Status()
	const flows, size = 16, 1 << 20
	var xs []*transfer
	for i := range flows {
		xs = append(xs, startTransfer(t, p.a, p.b, uint16(9100+i), size))
	}
	for _, x := range xs {
		x.wait(t)
	}
	afterA, afterB := p.a.l.Status(), p.b.l.Status()
	for _, side := range []struct {
		name          string
		before, after lagg.Status
		min           uint64
	}{
		{"A (data)", beforeA, afterA, flows * size / 10}, // at least 10% of the data each
		{"B (acks)", beforeB, afterB, 1},
	} {
		var per []uint64
		var total uint64
		for _, ps := range side.after.Ports {
			d := ps.Counters.TxBytes - side.before.Port(ps.Name).Counters.TxBytes
			per = append(per, d)
			total += d
		}
		t.Logf("measure: in-process lacp %d flows, %s tx bytes per port %v (total %d)", flows, side.name, per, total)
		for i, d := range per {
			if d < side.min {
				t.Errorf("%s port %d sent %d bytes, want >= %d: flows not spread", side.name, i, d, side.min)
			}
		}
	}
}

// TestLACPLinkPull: pulling the cable of the port a transfer uses takes it
// out of distribution at once (the engine hears of the carrier loss
// synchronously) and the transfer finishes intact on the other port.
func TestLACPLinkPull(t *testing.T) {
	p := lacpPair(t, 2, nil)
	a := p.a.l
	timeUntil(t, time.Second, "distributing", func() bool { return distributing(a) == 2 && distributing(p.b.l) == 2 })
	const size = 32 << 20
	x := startTransfer(t, p.a, p.b, 9000, size)
	x.waitReceived(t, size/4)

	// Find the port carrying the flow.
	tx := func(i int) uint64 { return portStatus(t, a, p.portA(i)).Counters.TxBytes }
	b0, b1 := tx(0), tx(1)
	time.Sleep(50 * time.Millisecond)
	used, other := 0, 1
	if tx(1)-b1 > tx(0)-b0 {
		used, other = 1, 0
	}
	otherFrames := portStatus(t, a, p.portA(other)).Counters.TxFrames
	got := x.received.Load()

	start := time.Now()
	p.wires[used].SetLinkUp(false)
	var out, moved, resumed time.Duration
	for deadline := start.Add(10 * time.Second); time.Now().Before(deadline) && (out == 0 || moved == 0 || resumed == 0); {
		now := time.Since(start)
		if out == 0 && !isDistributing(a, p.portA(used)) {
			out = now
		}
		if moved == 0 && portStatus(t, a, p.portA(other)).Counters.TxFrames > otherFrames {
			moved = now
		}
		if resumed == 0 && x.received.Load() >= got+1<<20 {
			resumed = now
		}
		time.Sleep(100 * time.Microsecond)
	}
	t.Logf("measure: in-process lacp link pull: out of distribution %v, first frame on the other port %v, transfer +1MiB %v", out, moved, resumed)
	if out == 0 || out > 10*time.Millisecond {
		t.Errorf("pulled port left distribution after %v, want within 10ms", out)
	}
	if moved == 0 || resumed == 0 {
		t.Fatalf("traffic did not move: first frame %v, resumed %v", moved, resumed)
	}
	x.wait(t)
	if isDistributing(p.b.l, p.portB(used)) {
		t.Errorf("B: pulled port %s still distributing", p.portB(used))
	}
	if got := distributing(a); got != 1 {
		t.Errorf("A: %d ports distributing after the pull, want 1", got)
	}
	if ps := lacpPort(t, a, p.portA(used)); ps.Rx != "PORT_DISABLED" || ps.Mux != "DETACHED" {
		t.Errorf("pulled port: got rx %s mux %s, want PORT_DISABLED DETACHED", ps.Rx, ps.Mux)
	}
	if !a.Status().Up {
		t.Errorf("lagg down with one port left")
	}
}

// TestLACPSilentLoss: a wire that stops passing frames with its carrier up
// is only noticed by the missing LACPDUs: at the fast rate the port leaves
// distribution after the 3 s short timeout (2-3 s after the cut, the last
// PDU having come up to 1 s before). The slow rate's 90 s case runs on the
// engine's fake clock: lacp.TestSilentLoss, "slow both ways".
func TestLACPSilentLoss(t *testing.T) {
	p := lacpPair(t, 2, nil)
	a, b := p.a.l, p.b.l
	timeUntil(t, time.Second, "distributing", func() bool { return distributing(a) == 2 && distributing(b) == 2 })
	time.Sleep(1500 * time.Millisecond) // into the periodic exchange
	p.wires[0].SetPassing(false)
	took := timeUntil(t, 6*time.Second, "silent port out of distribution", func() bool {
		return !isDistributing(a, p.portA(0)) && !isDistributing(b, p.portB(0))
	})
	t.Logf("measure: in-process lacp silent loss (fast rate): out of distribution after %v", took)
	if took < 2*time.Second || took > 4500*time.Millisecond {
		t.Errorf("silent port left distribution after %v, want 2s..4.5s", took)
	}
	if ps := lacpPort(t, a, p.portA(0)); ps.Rx != "EXPIRED" && ps.Rx != "DEFAULTED" {
		t.Errorf("silent port rx: got %s, want EXPIRED or DEFAULTED", ps.Rx)
	}
	if !portStatus(t, a, p.portA(0)).LinkUp {
		t.Errorf("silent port: link reported down, want up (carrier stays)")
	}
	if !isDistributing(a, p.portA(1)) || !a.Status().Up {
		t.Fatalf("the other port stopped distributing")
	}
	if err := ping(p.a, p.b.addr.Addr(), 5*time.Second); err != nil {
		t.Fatalf("ping over the remaining port: %v", err)
	}
	p.wires[0].SetPassing(true)
	back := timeUntil(t, 5*time.Second, "silent port back", func() bool {
		return isDistributing(a, p.portA(0)) && isDistributing(b, p.portB(0))
	})
	t.Logf("measure: in-process lacp silent loss repaired: distributing again after %v", back)
}

// TestLACPMaxPortsStandby: with max ports 2 and priorities 1000/2000/3000,
// the 3000 port is STANDBY; pulling the 1000 port's wire brings it in.
func TestLACPMaxPortsStandby(t *testing.T) {
	p := lacpPair(t, 3, func(side int, o *lagg.LACPOptions) {
		if side == 0 {
			o.MaxPorts = 2
		}
	})
	a, b := p.a.l, p.b.l
	for i, prio := range []uint16{1000, 2000, 3000} {
		if err := a.SetPortPriority(p.portA(i), prio); err != nil {
			t.Fatal(err)
		}
	}
	timeUntil(t, 2*time.Second, "two ports distributing", func() bool {
		return isDistributing(a, p.portA(0)) && isDistributing(a, p.portA(1)) &&
			isDistributing(b, p.portB(0)) && isDistributing(b, p.portB(1))
	})
	time.Sleep(200 * time.Millisecond) // a STANDBY port must stay out
	ps := portStatus(t, a, p.portA(2))
	if ps.Flags&lagg.PortStandby == 0 || ps.Flags&(lagg.PortDistributing|lagg.PortCollecting) != 0 {
		t.Errorf("A port prio 3000: got flags %v, want STANDBY only", ps.Flags)
	}
	if ps.LACP == nil || ps.LACP.Selected != "standby" || ps.LACP.Actor.State&lacp.StateSync != 0 {
		t.Errorf("A port prio 3000: got LACP %+v, want standby and out of sync", ps.LACP)
	}
	if isDistributing(b, p.portB(2)) {
		t.Errorf("B distributes on the link A keeps STANDBY")
	}
	if got := a.Status().LACP.Distributing; got != 2 {
		t.Errorf("A: %d distributing, want 2", got)
	}

	p.wires[0].SetLinkUp(false)
	took := timeUntil(t, 2*time.Second, "standby port distributing", func() bool {
		return isDistributing(a, p.portA(2)) && isDistributing(b, p.portB(2))
	})
	t.Logf("measure: in-process lacp standby port (prio 3000) distributing %v after the prio 1000 wire was pulled", took)
	if ps := portStatus(t, a, p.portA(2)); ps.Flags&lagg.PortStandby != 0 {
		t.Errorf("former standby port: flags %v still STANDBY", ps.Flags)
	}
	if got := distributing(a); got != 2 {
		t.Errorf("A: %d ports distributing, want 2", got)
	}
}

// TestLACPMultiSpeed: with multi-speed off the 1000 Mbit/s port of a
// 1000+10000 pair is STANDBY; with it on (the default) both distribute.
func TestLACPMultiSpeed(t *testing.T) {
	for _, multi := range []bool{false, true} {
		t.Run(fmt.Sprintf("multispeed=%v", multi), func(t *testing.T) {
			p := lacpPairSpeeds(t, []uint64{1000, 10000}, func(side int, o *lagg.LACPOptions) { o.MultiSpeed = multi })
			a := p.a.l
			want := 1
			if multi {
				want = 2
			}
			timeUntil(t, time.Second, "10G port distributing", func() bool {
				return isDistributing(a, p.portA(1)) && isDistributing(p.b.l, p.portB(1)) && distributing(a) == want
			})
			time.Sleep(200 * time.Millisecond)
			slow := portStatus(t, a, p.portA(0))
			if slow.SpeedMbps != 1000 || portStatus(t, a, p.portA(1)).SpeedMbps != 10000 {
				t.Fatalf("speeds: got %d and %d, want 1000 and 10000", slow.SpeedMbps, portStatus(t, a, p.portA(1)).SpeedMbps)
			}
			if multi {
				if slow.Flags&lagg.PortDistributing == 0 || slow.Flags&lagg.PortStandby != 0 {
					t.Errorf("1G port with multi-speed: got flags %v, want DISTRIBUTING", slow.Flags)
				}
				return
			}
			if slow.Flags&lagg.PortStandby == 0 || slow.Flags&lagg.PortDistributing != 0 {
				t.Errorf("1G port without multi-speed: got flags %v, want STANDBY", slow.Flags)
			}
			if slow.LACP == nil || slow.LACP.Selected != "standby" {
				t.Errorf("1G port: got LACP %+v, want standby", slow.LACP)
			}
			if distributing(p.b.l) != 1 {
				t.Errorf("B: %d ports distributing, want 1", distributing(p.b.l))
			}
		})
	}
}

// TestLACPActivePassive: active-passive aggregates; passive-passive never
// speaks, never aggregates, and every port is flagged as churning
// (CHURN_MONITOR: not in sync). The 60 s step to CHURN is lacp.TestChurn.
func TestLACPActivePassive(t *testing.T) {
	t.Run("active-passive", func(t *testing.T) {
		p := lacpPair(t, 2, func(side int, o *lagg.LACPOptions) { o.Passive = side == 1 })
		took := timeUntil(t, time.Second, "distributing", func() bool { return distributing(p.a.l) == 2 && distributing(p.b.l) == 2 })
		t.Logf("measure: in-process lacp active-passive distributing after %v", took)
		ps := lacpPort(t, p.a.l, p.portA(0))
		if ps.Partner.State&lacp.StateActivity != 0 {
			t.Errorf("A sees partner state %v, want passive (no ACTIVITY)", ps.Partner.State)
		}
		if err := ping(p.a, p.b.addr.Addr(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("passive-passive", func(t *testing.T) {
		p := lacpPair(t, 2, func(side int, o *lagg.LACPOptions) { o.Passive = true })
		time.Sleep(time.Second) // active-passive needs far less
		for _, l := range []*lagg.Lagg{p.a.l, p.b.l} {
			st := l.Status()
			if st.Up || distributing(l) != 0 {
				t.Errorf("%s: up %v with %d distributing, want down and none", st.Name, st.Up, distributing(l))
			}
			for _, ps := range st.Ports {
				c := ps.LACP
				if c.Counters.LACPDUsTx != 0 || c.Counters.LACPDUsRx != 0 {
					t.Errorf("%s: LACPDUs tx %d rx %d, want none", ps.Name, c.Counters.LACPDUsTx, c.Counters.LACPDUsRx)
				}
				if c.ActorChurn != "CHURN_MONITOR" || c.PartnerChurn != "CHURN_MONITOR" {
					t.Errorf("%s: churn actor %s partner %s, want CHURN_MONITOR", ps.Name, c.ActorChurn, c.PartnerChurn)
				}
			}
		}
		if err := ping(p.a, p.b.addr.Addr(), 300*time.Millisecond); err == nil {
			t.Errorf("ping crossed a passive-passive lagg")
		}
	})
}

// TestLACPMinPorts: min ports 2 with one of two links pulled takes the lagg
// down (the other port keeps its LACP state) and drops what the stack
// sends; plugging it back brings the lagg up.
func TestLACPMinPorts(t *testing.T) {
	p := lacpPair(t, 2, func(side int, o *lagg.LACPOptions) { o.MinPorts = 2 })
	a := p.a.l
	timeUntil(t, time.Second, "distributing", func() bool { return distributing(a) == 2 && a.Status().Up })
	if err := ping(p.a, p.b.addr.Addr(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.wires[0].SetLinkUp(false)
	timeUntil(t, time.Second, "lagg down", func() bool { return !a.Status().Up })
	if ps := lacpPort(t, a, p.portA(1)); !ps.Distributing {
		t.Errorf("remaining port: LACP mux %s, want still DISTRIBUTING below min ports", ps.Mux)
	}
	drops := a.Status().Counters.Drop(lagg.DropNoPort)
	sent := dataFrames(t, a, p.portA(1))
	if err := ping(p.a, p.b.addr.Addr(), 300*time.Millisecond); err == nil {
		t.Errorf("ping crossed a lagg below min ports")
	}
	st := a.Status()
	if got := st.Counters.Drop(lagg.DropNoPort); got <= drops {
		t.Errorf("DropNoPort: got %d, want > %d", got, drops)
	}
	if got := dataFrames(t, a, p.portA(1)); got != sent {
		t.Errorf("remaining port sent %d data frames below min ports, want 0", got-sent)
	}
	t.Logf("measure: in-process lacp min_ports 2 with 1 port: %d frames dropped (no-port)", st.Counters.Drop(lagg.DropNoPort)-drops)
	p.wires[0].SetLinkUp(true)
	took := timeUntil(t, 2*time.Second, "lagg up", func() bool { return a.Status().Up })
	t.Logf("measure: in-process lacp min_ports 2: lagg up %v after the replug", took)
	if err := ping(p.a, p.b.addr.Addr(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestLACPFallback: against a plain failover lagg (no LACPDUs) an lacp lagg
// with fallback carries traffic on one port once every port has DEFAULTED
// (the 3 s it waits in EXPIRED); without fallback it never does, and its
// ports are flagged as churning.
func TestLACPFallback(t *testing.T) {
	for _, fallback := range []bool{true, false} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			t.Parallel()
			p := newPair(t, "lacp", 2, func(side int, o *lagg.Options) {
				if side == 1 {
					o.Proto = "failover"
				}
				o.LACP.FastRate = true
				o.LACP.Fallback = fallback
			})
			a := p.a.l
			if !fallback {
				time.Sleep(4500 * time.Millisecond)
				st := a.Status()
				if st.Up || distributing(a) != 0 || st.LACP.Fallback {
					t.Errorf("without fallback: up %v, %d distributing, fallback %v; want down, 0, false", st.Up, distributing(a), st.LACP.Fallback)
				}
				for _, ps := range st.Ports {
					if ps.LACP.Rx != "DEFAULTED" || ps.LACP.PartnerChurn != "CHURN_MONITOR" {
						t.Errorf("%s: rx %s partner churn %s, want DEFAULTED CHURN_MONITOR", ps.Name, ps.LACP.Rx, ps.LACP.PartnerChurn)
					}
				}
				if err := ping(p.a, p.b.addr.Addr(), 300*time.Millisecond); err == nil {
					t.Errorf("ping crossed without fallback")
				}
				if st := a.Status(); st.Counters.Drop(lagg.DropNoPort) == 0 {
					t.Errorf("DropNoPort: got 0, want the pings dropped")
				}
				return
			}
			took := timeUntil(t, 6*time.Second, "fallback port", func() bool { return a.Status().Up && distributing(a) == 1 })
			t.Logf("measure: in-process lacp fallback: traffic allowed %v after link up", took)
			if took < 2*time.Second || took > 4500*time.Millisecond {
				t.Errorf("fallback after %v, want 2s..4.5s (the defaulted timeout)", took)
			}
			st := a.Status()
			if !st.LACP.Fallback || !st.Port(p.portA(0)).LACP.Fallback {
				t.Errorf("fallback flags: lagg %v port %v, want true", st.LACP.Fallback, st.Port(p.portA(0)).LACP.Fallback)
			}
			if err := ping(p.a, p.b.addr.Addr(), 5*time.Second); err != nil {
				t.Fatalf("ping through the fallback port: %v", err)
			}
			listenEcho(t, p.b, 7)
			echo(t, p.a, p.b, 7, bytes.Repeat([]byte("fallback"), 10000))
			if n := dataFrames(t, a, p.portA(1)); n != 0 {
				t.Errorf("second port sent %d data frames, want 0 (fallback uses one port)", n)
			}
			if n := dataFrames(t, a, p.portA(0)); n == 0 {
				t.Errorf("fallback port sent no data frames")
			}
		})
	}
}
