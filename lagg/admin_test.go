package lagg_test

import (
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPortDisabledFailover(t *testing.T) {
	p := newPair(t, "failover", 2, nil)
	l := p.a.l
	if got := l.Status().TxPort; got != p.portA(0) {
		t.Fatalf("tx port %s, want %s", got, p.portA(0))
	}
	// Both ends: back to back there is no switch to learn where the
	// lagg's MAC went, so B must stop sending on the port too.
	for _, side := range []struct {
		l    *lagg.Lagg
		port string
	}{{l, p.portA(0)}, {p.b.l, p.portB(0)}} {
		if err := side.l.SetPortDisabled(side.port, true); err != nil {
			t.Fatal(err)
		}
	}
	st := l.Status()
	if st.TxPort != p.portA(1) {
		t.Errorf("after disabling %s: tx port %s, want %s", p.portA(0), st.TxPort, p.portA(1))
	}
	ps := st.Port(p.portA(0))
	if !ps.Disabled || !ps.LinkUp || ps.Flags&(lagg.PortActive|lagg.PortCollecting|lagg.PortDistributing) != 0 {
		t.Errorf("disabled port: disabled=%v link=%v flags=%v; want disabled, link up, no ACTIVE/COLLECTING/DISTRIBUTING", ps.Disabled, ps.LinkUp, ps.Flags)
	}
	// Traffic still flows, on the other port.
	if err := pingB(p); err != nil {
		t.Fatal(err)
	}
	if got := l.DisabledPorts(); len(got) != 1 || got[0] != p.portA(0) {
		t.Errorf("DisabledPorts %v, want [%s]", got, p.portA(0))
	}
	l.SetDisabledPorts(nil)
	p.b.l.SetDisabledPorts(nil)
	if got := l.Status().TxPort; got != p.portA(0) {
		t.Errorf("enabled again: tx port %s, want %s (pre-emption)", got, p.portA(0))
	}
	if ps := portStatus(t, l, p.portA(0)); ps.Disabled || ps.Flags&lagg.PortActive == 0 {
		t.Errorf("enabled again: disabled=%v flags=%v", ps.Disabled, ps.Flags)
	}
}

func pingB(p *pair) error {
	return testkit.Ping(p.a.s, p.b.addr.Addr(), 10*time.Second)
}

func TestPortDisabledBeforeJoin(t *testing.T) {
	id := nextID()
	w := newWire(id, 0)
	t.Cleanup(func() { w.A.Close(); w.B.Close() })
	l, err := lagg.New(options("laggD"+w.A.Name(), "loadbalance"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.SetPortDisabled(w.A.Name(), true); err != nil {
		t.Fatal(err)
	}
	if err := l.AddPort(keptPort{w.A}, lagg.DefaultPriority); err != nil {
		t.Fatal(err)
	}
	st := l.Status()
	if st.Up || !st.Ports[0].Disabled {
		t.Errorf("a port disabled before it joined: lagg up=%v, port disabled=%v; want down, disabled", st.Up, st.Ports[0].Disabled)
	}
	if err := l.SetPortDisabled("", true); err == nil {
		t.Error("SetPortDisabled with no name: no error")
	}
}

func TestPortDisabledLACPLeaves(t *testing.T) {
	p := newPair(t, "lacp", 2, nil)
	waitFor(t, "both ports distributing", func() bool {
		for _, ps := range p.a.l.Status().Ports {
			if ps.Flags&lagg.PortDistributing == 0 {
				return false
			}
		}
		return true
	})
	if err := p.a.l.SetPortDisabled(p.portA(1), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the disabled port to stop distributing on both ends", func() bool {
		return portStatus(t, p.a.l, p.portA(1)).Flags&lagg.PortDistributing == 0 &&
			portStatus(t, p.b.l, p.portB(1)).Flags&lagg.PortDistributing == 0
	})
	if err := pingB(p); err != nil {
		t.Fatal(err)
	}
}

func TestLinkFailureCount(t *testing.T) {
	p := newPair(t, "failover", 2, nil)
	before := portStatus(t, p.a.l, p.portA(0))
	if before.LinkFailures != 0 || before.LastChange.IsZero() {
		t.Fatalf("new port: failures %d, last change %v; want 0 and the join time", before.LinkFailures, before.LastChange)
	}
	for i := range 2 {
		p.wires[0].SetLinkUp(false)
		waitFor(t, "link down", func() bool { return !portStatus(t, p.a.l, p.portA(0)).LinkUp })
		p.wires[0].SetLinkUp(true)
		waitFor(t, "link up", func() bool { return portStatus(t, p.a.l, p.portA(0)).LinkUp })
		if got := portStatus(t, p.a.l, p.portA(0)).LinkFailures; got != uint64(i+1) {
			t.Errorf("after %d losses: link failures %d", i+1, got)
		}
	}
	after := portStatus(t, p.a.l, p.portA(0))
	if !after.LastChange.After(before.LastChange) {
		t.Errorf("last change %v not after %v", after.LastChange, before.LastChange)
	}
	if got := portStatus(t, p.a.l, p.portA(1)).LinkFailures; got != 0 {
		t.Errorf("the other port: %d link failures, want 0", got)
	}
}

func TestZeroCounters(t *testing.T) {
	p := newPair(t, "loadbalance", 2, nil)
	if err := pingB(p); err != nil {
		t.Fatal(err)
	}
	l := p.a.l
	if st := l.Status(); st.Counters.TxFrames == 0 {
		t.Fatal("no frames counted before zeroing")
	}
	l.ZeroCounters()
	st := l.Status()
	if st.Counters.TxFrames != 0 || st.Counters.RxFrames != 0 {
		t.Errorf("after ZeroCounters: lagg counters %+v, want zero", st.Counters)
	}
	for _, ps := range st.Ports {
		if ps.Counters.TxFrames != 0 || ps.Counters.RxBytes != 0 {
			t.Errorf("after ZeroCounters: port %s counters %+v, want zero", ps.Name, ps.Counters)
		}
	}
	if err := pingB(p); err != nil {
		t.Fatal(err)
	}
	st = l.Status()
	if st.Counters.TxFrames == 0 || st.Counters.TxFrames > 10 {
		t.Errorf("after a ping: %d frames sent since zeroing, want 1..10", st.Counters.TxFrames)
	}
	// A port that leaves keeps the totals where they were.
	total := st.Counters.TxFrames
	if err := l.RemovePort(p.portA(1)); err != nil {
		t.Fatal(err)
	}
	if got := l.Status().Counters.TxFrames; got != total {
		t.Errorf("after a port left: lagg tx frames %d, want %d", got, total)
	}
}
