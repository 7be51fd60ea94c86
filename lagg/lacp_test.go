package lagg_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/lagg/lacp"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// These tests run two lagg endpoints (each under its own gVisor stack) over
// in-memory wires, with the fast LACP rate. Those that carry data while the
// protocol runs (TestLACPSpreadsFlows, TestLACPLinkPull) run in real time;
// the others run the laggs on a fake clock (fakeLACP) and check the
// protocol's timing exactly: a silent port leaves distribution 3 s after
// the last LACPDU it heard, fallback starts 3 s after link up. What needs
// the slow rate's 90 s timeout or the 60 s churn timer is shown on the
// engine's own fake clock: lacp.TestSilentLoss ("slow both ways") and
// lacp.TestChurn in lagg/lacp/engine_test.go.

// lacpPair is two laggs running lacp at the fast rate over n wires, in real
// time; tweak changes each side's LACP options.
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

// fakeStep is how far fakeLACP moves the clock at a time. Every event the
// tests cause happens at a step and the LACP timers (1 s, 3 s, 60 s) are
// multiples of it, so every timer falls due exactly at a step.
const fakeStep = 100 * time.Millisecond

// fakeLACP is a pair whose laggs run on one fake clock (lagg.Options.Clock),
// at the fast LACP rate unless tweak says otherwise. Frames still cross the
// wires on real goroutines, so after each step of the clock it waits, in
// real time, until the laggs are idle (settle): every timer that fell due
// handled and every slow-protocol frame sent over a passing wire handled by
// the receiving lagg. A test then checks the protocol's state at that fake
// time.
type fakeLACP struct {
	*pair
	clk   *testkit.FakeClock
	start time.Time
	// timers is how many laggs run lacp: each keeps one timer armed at rest
	// (the engine always has a deadline here: periodic transmission,
	// current_while or churn detection).
	timers int
	// both: both sides run lacp, so each side's slow-protocol frames are
	// counted by the other and settle can tell when all have arrived.
	both bool
	cut  []bool      // wires losing frames (setPassing)
	lost [][2]uint64 // per wire, frames A→B and B→A lost while it was cut
}

// newFakeLACP builds a fakeLACP over one wire per speed (Mbit/s) and waits
// until it is idle at its start time.
func newFakeLACP(t *testing.T, speeds []uint64, tweak func(side int, o *lagg.Options)) *fakeLACP {
	t.Helper()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := testkit.NewFakeClock(start)
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
	var lacpSides int
	p := newPairWith(t, id, "lacp", wires, aPorts, bPorts, func(side int, o *lagg.Options) {
		o.Clock = clk
		o.AnnounceCount = 1 // no repetition timer: idle counts the protocols' timers only
		o.LACP.FastRate = true
		if tweak != nil {
			tweak(side, o)
		}
		if o.Proto == lagg.ProtoLACP {
			lacpSides++
		}
	})
	f := &fakeLACP{pair: p, clk: clk, start: start, timers: lacpSides, both: lacpSides == 2,
		cut: make([]bool, len(wires)), lost: make([][2]uint64, len(wires))}
	f.settle(t)
	return f
}

// speeds returns n times 1000 Mbit/s.
func speeds(n int) []uint64 {
	s := make([]uint64, n)
	for i := range s {
		s[i] = 1000
	}
	return s
}

// elapsed is the fake time since the pair was made.
func (f *fakeLACP) elapsed() time.Duration { return f.clk.Now().Sub(f.start) }

// slowTx and slowRx count the slow-protocol frames a port's LACP engine
// sent, and those it was handed (whatever it made of them).
func slowTx(c lacp.Counters) uint64 { return c.LACPDUsTx + c.MarkerResponseTx }

func slowRx(c lacp.Counters) uint64 {
	return c.LACPDUsRx + c.MarkerRx + c.MarkerResponseRx + c.MalformedRx + c.UnknownRx + c.LoopbackRx + c.DisabledRx
}

// inFlight returns, for wire i, the slow-protocol frames sent A→B and B→A
// that the other side has not handled (nor lost on a cut wire).
func (f *fakeLACP) inFlight(sa, sb *lagg.Status, i int) (ab, ba int64) {
	pa, pb := sa.Port(f.portA(i)), sb.Port(f.portB(i))
	if pa == nil || pb == nil || pa.LACP == nil || pb.LACP == nil {
		return 0, 0
	}
	ca, cb := pa.LACP.Counters, pb.LACP.Counters
	return int64(slowTx(ca)-slowRx(cb)) - int64(f.lost[i][0]), int64(slowTx(cb)-slowRx(ca)) - int64(f.lost[i][1])
}

// idle reports whether both laggs have handled everything due at the
// current fake time, and if not, what is outstanding.
func (f *fakeLACP) idle() (bool, string) {
	if n := f.clk.Pending(); n != f.timers {
		return false, fmt.Sprintf("%d timers armed, want %d (a fired one not handled yet)", n, f.timers)
	}
	if f.both {
		sa, sb := f.a.l.Status(), f.b.l.Status()
		for i := range f.wires {
			if f.cut[i] {
				continue
			}
			if ab, ba := f.inFlight(&sa, &sb, i); ab != 0 || ba != 0 {
				return false, fmt.Sprintf("wire %d: %d frames A→B and %d B→A not handled yet", i, ab, ba)
			}
		}
	}
	// Again: a lagg may have re-armed its timer while the counters were read.
	if n := f.clk.Pending(); n != f.timers {
		return false, fmt.Sprintf("%d timers armed, want %d (a fired one not handled yet)", n, f.timers)
	}
	return true, ""
}

// settle waits (in real time) until the laggs are idle.
func (f *fakeLACP) settle(t *testing.T) {
	t.Helper()
	var why string
	if !testkit.Poll(10*time.Second, func() bool {
		var ok bool
		ok, why = f.idle()
		return ok
	}) {
		t.Fatalf("at %v on the fake clock: the laggs are not idle after 10 s: %s", f.elapsed(), why)
	}
}

// step moves the fake clock by fakeStep and settles.
func (f *fakeLACP) step(t *testing.T) {
	t.Helper()
	f.clk.Advance(fakeStep)
	f.settle(t)
}

// advance moves the fake clock by d, a step at a time.
func (f *fakeLACP) advance(t *testing.T, d time.Duration) {
	t.Helper()
	for end := f.elapsed() + d; f.elapsed() < end; {
		f.step(t)
	}
}

// advanceUntil settles, then steps the fake clock until cond holds, failing
// the test once max has passed on it; it returns the fake time cond took.
func (f *fakeLACP) advanceUntil(t *testing.T, max time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	f.settle(t)
	from := f.elapsed()
	for !cond() {
		if f.elapsed()-from >= max {
			t.Fatalf("%s: not within %v on the fake clock", what, max)
		}
		f.step(t)
	}
	return f.elapsed() - from
}

// setPassing makes wire i pass frames or silently lose them (carrier up),
// keeping count of the frames lost so that settle still works, and
// settles.
func (f *fakeLACP) setPassing(t *testing.T, i int, pass bool) {
	t.Helper()
	f.settle(t)
	f.wires[i].SetPassing(pass)
	f.cut[i] = !pass
	if pass && f.both {
		// The laggs are idle: whatever the other side has not handled
		// was lost.
		sa, sb := f.a.l.Status(), f.b.l.Status()
		f.lost[i] = [2]uint64{}
		ab, ba := f.inFlight(&sa, &sb, i)
		f.lost[i] = [2]uint64{uint64(ab), uint64(ba)}
	}
	f.settle(t)
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

// TestLACPNegotiatesAndCarries (fake clock): 2 and 4 ports reach
// DISTRIBUTING on both sides within a second, with the partner's identity
// and full state recorded, and TCP crosses.
func TestLACPNegotiatesAndCarries(t *testing.T) {
	for _, n := range []int{2, 4} {
		t.Run(fmt.Sprintf("%dports", n), func(t *testing.T) {
			p := newFakeLACP(t, speeds(n), nil)
			took := p.advanceUntil(t, time.Second, "all ports distributing", func() bool {
				return distributing(p.a.l) == n && distributing(p.b.l) == n
			})
			t.Logf("measure: in-process lacp %d ports: link up to all distributing %v on the fake clock", n, took)
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
			// The PDUs telling each side of the other's last change may
			// wait for the transmit limit (3 a second).
			p.advanceUntil(t, 2*time.Second, "full actor and partner state on every port", func() bool {
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
			testkit.ServeEcho(t, p.b.listen(t, 7))
			testkit.CheckEcho(t, p.a.dialer(p.b, 7), bytes.Repeat([]byte("x"), 100000))
		})
	}
}

// TestLACPSpreadsFlows: many TCP flows over a 2-port aggregation use both
// ports in both directions.
func TestLACPSpreadsFlows(t *testing.T) {
	p := lacpPair(t, 2, nil)
	testkit.WaitFor(t, time.Second, "distributing", func() bool { return distributing(p.a.l) == 2 && distributing(p.b.l) == 2 })
	beforeA, beforeB := p.a.l.Status(), p.b.l.Status()
	const flows, size = 16, 1 << 20
	var xs []*testkit.Transfer
	for i := range flows {
		xs = append(xs, startTransfer(t, p.a, p.b, uint16(9100+i), size))
	}
	for _, x := range xs {
		x.Wait(t, 2*time.Minute)
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
	testkit.WaitFor(t, time.Second, "distributing", func() bool { return distributing(a) == 2 && distributing(p.b.l) == 2 })
	const size = 32 << 20
	x := startTransfer(t, p.a, p.b, 9000, size)
	x.WaitReceived(t, size/4, time.Minute)

	// Find the port carrying the flow.
	tx := func(i int) uint64 { return portStatus(t, a, p.portA(i)).Counters.TxBytes }
	b0, b1 := tx(0), tx(1)
	time.Sleep(50 * time.Millisecond)
	used, other := 0, 1
	if tx(1)-b1 > tx(0)-b0 {
		used, other = 1, 0
	}
	otherFrames := portStatus(t, a, p.portA(other)).Counters.TxFrames
	got := x.Received()

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
		if resumed == 0 && x.Received() >= got+1<<20 {
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
	x.Wait(t, 2*time.Minute)
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

// TestLACPSilentLoss (fake clock): a wire that stops passing frames with
// its carrier up is only noticed by the missing LACPDUs: at the fast rate
// each side takes the port out of distribution exactly the 3 s short
// timeout after the last LACPDU it heard (not yet at 2.9 s, by 3.1 s). The
// slow rate's 90 s case runs on the engine's fake clock: lacp.TestSilentLoss,
// "slow both ways".
func TestLACPSilentLoss(t *testing.T) {
	p := newFakeLACP(t, speeds(2), nil)
	a, b := p.a.l, p.b.l
	p.advanceUntil(t, time.Second, "distributing", func() bool { return distributing(a) == 2 && distributing(b) == 2 })

	// Into the periodic exchange: past 1.5 s, and cut just after A heard
	// a PDU on wire 0; note when each side last heard one there.
	heard := func(l *lagg.Lagg, name string) uint64 { return lacpPort(t, l, name).Counters.LACPDUsRx }
	nA, nB := heard(a, p.portA(0)), heard(b, p.portB(0))
	var lastA, lastB time.Duration
	for {
		p.step(t)
		if n := heard(a, p.portA(0)); n != nA {
			nA, lastA = n, p.elapsed()
		}
		if n := heard(b, p.portB(0)); n != nB {
			nB, lastB = n, p.elapsed()
		}
		if p.elapsed() >= 1500*time.Millisecond && lastA == p.elapsed() && lastB > 0 {
			break
		}
		if p.elapsed() > 5*time.Second {
			t.Fatalf("no LACPDUs on wire 0: A heard its last at %v, B at %v", lastA, lastB)
		}
	}
	p.setPassing(t, 0, false)
	cut := p.elapsed()

	var outA, outB time.Duration
	for outA == 0 || outB == 0 {
		if p.elapsed()-cut > 6*time.Second {
			t.Fatalf("silent port still distributing 6 s after the cut (fake clock): A %v, B %v",
				isDistributing(a, p.portA(0)), isDistributing(b, p.portB(0)))
		}
		p.step(t)
		if outA == 0 && !isDistributing(a, p.portA(0)) {
			outA = p.elapsed()
		}
		if outB == 0 && !isDistributing(b, p.portB(0)) {
			outB = p.elapsed()
		}
	}
	t.Logf("measure: in-process lacp silent loss (fast rate, fake clock): cut at %v; A out of distribution %v after the last LACPDU it heard, B %v",
		cut, outA-lastA, outB-lastB)
	for _, side := range []struct {
		name      string
		last, out time.Duration
	}{{"A", lastA, outA}, {"B", lastB, outB}} {
		if d := side.out - side.last; d <= 2900*time.Millisecond || d > 3100*time.Millisecond {
			t.Errorf("%s: silent port left distribution %v after the last LACPDU it heard, want 3s (in at 2.9s, out by 3.1s)", side.name, d)
		}
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
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 5*time.Second); err != nil {
		t.Fatalf("ping over the remaining port: %v", err)
	}
	p.setPassing(t, 0, true)
	back := p.advanceUntil(t, 5*time.Second, "silent port back", func() bool {
		return isDistributing(a, p.portA(0)) && isDistributing(b, p.portB(0))
	})
	t.Logf("measure: in-process lacp silent loss repaired: distributing again after %v on the fake clock", back)
}

// TestLACPMaxPortsStandby (fake clock): with max ports 2 and priorities
// 1000/2000/3000, the 3000 port is STANDBY and stays so; pulling the 1000
// port's wire brings it in.
func TestLACPMaxPortsStandby(t *testing.T) {
	p := newFakeLACP(t, speeds(3), func(side int, o *lagg.Options) {
		if side == 0 {
			o.LACP.MaxPorts = 2
		}
	})
	a, b := p.a.l, p.b.l
	for i, prio := range []uint16{1000, 2000, 3000} {
		if err := a.SetPortPriority(p.portA(i), prio); err != nil {
			t.Fatal(err)
		}
	}
	p.advanceUntil(t, 2*time.Second, "two ports distributing", func() bool {
		return isDistributing(a, p.portA(0)) && isDistributing(a, p.portA(1)) &&
			isDistributing(b, p.portB(0)) && isDistributing(b, p.portB(1))
	})
	p.advance(t, 5*time.Second) // a STANDBY port must stay out
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
	took := p.advanceUntil(t, 2*time.Second, "standby port distributing", func() bool {
		return isDistributing(a, p.portA(2)) && isDistributing(b, p.portB(2))
	})
	t.Logf("measure: in-process lacp standby port (prio 3000) distributing %v (fake clock) after the prio 1000 wire was pulled", took)
	if ps := portStatus(t, a, p.portA(2)); ps.Flags&lagg.PortStandby != 0 {
		t.Errorf("former standby port: flags %v still STANDBY", ps.Flags)
	}
	if got := distributing(a); got != 2 {
		t.Errorf("A: %d ports distributing, want 2", got)
	}
}

// TestLACPMultiSpeed (fake clock): with multi-speed off the 1000 Mbit/s
// port of a 1000+10000 pair is STANDBY; with it on (the default) both
// distribute.
func TestLACPMultiSpeed(t *testing.T) {
	for _, multi := range []bool{false, true} {
		t.Run(fmt.Sprintf("multispeed=%v", multi), func(t *testing.T) {
			p := newFakeLACP(t, []uint64{1000, 10000}, func(side int, o *lagg.Options) { o.LACP.MultiSpeed = multi })
			a := p.a.l
			want := 1
			if multi {
				want = 2
			}
			p.advanceUntil(t, time.Second, "10G port distributing", func() bool {
				return isDistributing(a, p.portA(1)) && isDistributing(p.b.l, p.portB(1)) && distributing(a) == want
			})
			p.advance(t, 2*time.Second)
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

// TestLACPActivePassive (fake clock): active-passive aggregates within a
// second; passive-passive never speaks, never aggregates, and every port
// is flagged as churning (CHURN_MONITOR: not in sync). The 60 s step to
// CHURN is lacp.TestChurn.
func TestLACPActivePassive(t *testing.T) {
	t.Run("active-passive", func(t *testing.T) {
		p := newFakeLACP(t, speeds(2), func(side int, o *lagg.Options) { o.LACP.Passive = side == 1 })
		took := p.advanceUntil(t, time.Second, "distributing", func() bool { return distributing(p.a.l) == 2 && distributing(p.b.l) == 2 })
		t.Logf("measure: in-process lacp active-passive distributing after %v on the fake clock", took)
		ps := lacpPort(t, p.a.l, p.portA(0))
		if ps.Partner.State&lacp.StateActivity != 0 {
			t.Errorf("A sees partner state %v, want passive (no ACTIVITY)", ps.Partner.State)
		}
		if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("passive-passive", func(t *testing.T) {
		p := newFakeLACP(t, speeds(2), func(side int, o *lagg.Options) { o.LACP.Passive = true })
		p.advance(t, 10*time.Second) // active-passive needs under a second
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
		if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 300*time.Millisecond); err == nil {
			t.Errorf("ping crossed a passive-passive lagg")
		}
	})
}

// TestLACPMinPorts (fake clock): min ports 2 with one of two links pulled
// takes the lagg down at once (the other port keeps its LACP state) and
// drops what the stack sends; plugging it back brings the lagg up.
func TestLACPMinPorts(t *testing.T) {
	p := newFakeLACP(t, speeds(2), func(side int, o *lagg.Options) { o.LACP.MinPorts = 2 })
	a := p.a.l
	p.advanceUntil(t, time.Second, "distributing", func() bool { return distributing(a) == 2 && a.Status().Up })
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.wires[0].SetLinkUp(false)
	if a.Status().Up {
		t.Fatalf("lagg up with 1 of min 2 ports right after the pull")
	}
	p.settle(t)
	if ps := lacpPort(t, a, p.portA(1)); !ps.Distributing {
		t.Errorf("remaining port: LACP mux %s, want still DISTRIBUTING below min ports", ps.Mux)
	}
	drops := a.Status().Counters.Drop(lagg.DropNoPort)
	sent := dataFrames(t, a, p.portA(1))
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 300*time.Millisecond); err == nil {
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
	took := p.advanceUntil(t, 2*time.Second, "lagg up", func() bool { return a.Status().Up })
	t.Logf("measure: in-process lacp min_ports 2: lagg up %v after the replug (fake clock)", took)
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestLACPFallback (fake clock): against a plain failover lagg (no
// LACPDUs) an lacp lagg with fallback carries traffic once every port has
// DEFAULTED, 3 s after link up (the 3 s it waits in EXPIRED: not yet at
// 2.9 s, by 3.1 s), transmitting on one port: here the best, where B's
// traffic arrives too (TestLACPFallbackFollowsPartner has B on its other
// port); without fallback it never does, and its ports are flagged as
// churning.
func TestLACPFallback(t *testing.T) {
	for _, fallback := range []bool{true, false} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			t.Parallel()
			p := newFakeLACP(t, speeds(2), func(side int, o *lagg.Options) {
				if side == 1 {
					o.Proto = "failover"
				}
				o.LACP.Fallback = fallback
			})
			a := p.a.l
			if !fallback {
				p.advance(t, 10*time.Second)
				st := a.Status()
				if st.Up || distributing(a) != 0 || st.LACP.Fallback {
					t.Errorf("without fallback: up %v, %d distributing, fallback %v; want down, 0, false", st.Up, distributing(a), st.LACP.Fallback)
				}
				for _, ps := range st.Ports {
					if ps.LACP.Rx != "DEFAULTED" || ps.LACP.PartnerChurn != "CHURN_MONITOR" {
						t.Errorf("%s: rx %s partner churn %s, want DEFAULTED CHURN_MONITOR", ps.Name, ps.LACP.Rx, ps.LACP.PartnerChurn)
					}
				}
				if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 300*time.Millisecond); err == nil {
					t.Errorf("ping crossed without fallback")
				}
				if st := a.Status(); st.Counters.Drop(lagg.DropNoPort) == 0 {
					t.Errorf("DropNoPort: got 0, want the pings dropped")
				}
				return
			}
			took := p.advanceUntil(t, 6*time.Second, "fallback port", func() bool { return a.Status().Up && distributing(a) == 1 })
			t.Logf("measure: in-process lacp fallback: traffic allowed %v after link up (fake clock)", took)
			if took <= 2900*time.Millisecond || took > 3100*time.Millisecond {
				t.Errorf("fallback after %v, want 3s (the defaulted timeout: not at 2.9s, by 3.1s)", took)
			}
			st := a.Status()
			if !st.LACP.Fallback || !st.Port(p.portA(0)).LACP.Fallback {
				t.Errorf("fallback flags: lagg %v port %v, want true", st.LACP.Fallback, st.Port(p.portA(0)).LACP.Fallback)
			}
			if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 5*time.Second); err != nil {
				t.Fatalf("ping through the fallback port: %v", err)
			}
			testkit.ServeEcho(t, p.b.listen(t, 7))
			testkit.CheckEcho(t, p.a.dialer(p.b, 7), bytes.Repeat([]byte("fallback"), 10000))
			if n := dataFrames(t, a, p.portA(1)); n != 0 {
				t.Errorf("second port sent %d data frames, want 0 (fallback uses one port)", n)
			}
			if n := dataFrames(t, a, p.portA(0)); n == 0 {
				t.Errorf("fallback port sent no data frames")
			}
		})
	}
}
