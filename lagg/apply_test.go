package lagg_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// touchPort is a wire end that counts every change the lagg makes to it.
type touchPort struct {
	*refusingPort
	mtuSets, macSets atomic.Int64
}

func (p *touchPort) SetPortMTU(mtu uint32) error {
	p.mtuSets.Add(1)
	return p.refusingPort.SetPortMTU(mtu)
}

func (p *touchPort) SetLinkAddress(a tcpip.LinkAddress) {
	p.macSets.Add(1)
	p.refusingPort.SetLinkAddress(a)
}

func (p *touchPort) touches() int64 { return p.mtuSets.Load() + p.macSets.Load() }

func touchPorts(max uint32, ends ...*linkeptest.WireEnd) []*touchPort {
	out := make([]*touchPort, len(ends))
	for i, e := range ends {
		out[i] = &touchPort{refusingPort: &refusingPort{WireEnd: e, max: max}}
	}
	return out
}

// eventLog records a lagg's events.
type eventLog struct {
	mu sync.Mutex
	// +checklocks:mu
	evs []lagg.Event
}

func (e *eventLog) add(ev lagg.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *eventLog) count(k lagg.EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

// TestApplySameConfigIsNoop: applying what runs touches no port, fails
// nothing over and announces nothing.
func TestApplySameConfigIsNoop(t *testing.T) {
	l := newLagg(t, func(o *lagg.Options) { o.Proto = lagg.ProtoFailover; o.MTU = 9000 })
	tp := touchPorts(65535, wireEnds(1500, 1500)...)
	addPorts(t, l, tp[0], tp[1])
	var announces atomic.Int64
	l.SetAnnouncer(func() { announces.Add(1) })
	var log eventLog
	l.SetEventHandler(log.add)
	time.Sleep(20 * time.Millisecond) // let earlier announcements drain
	announces.Store(0)
	cfg := l.Config()
	before := tp[0].touches() + tp[1].touches()
	failovers := l.Status().Failovers
	for range 3 {
		if err := l.Apply(cfg); err != nil {
			t.Fatal(err)
		}
	}
	// The zero values that mean defaults are the same settings too.
	zero := cfg
	zero.Hash, zero.LACP, zero.RoundRobin = 0, lagg.LACPOptions{}, lagg.RoundRobinOptions{}
	if err := l.Apply(zero); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if got := tp[0].touches() + tp[1].touches() - before; got != 0 {
		t.Errorf("ports touched by re-applying the same config: %d times, want 0", got)
	}
	if got := l.Status().Failovers; got != failovers {
		t.Errorf("failovers: got %d, want %d", got, failovers)
	}
	if got := announces.Load(); got != 0 {
		t.Errorf("announcements: got %d, want 0", got)
	}
	if got := log.count(lagg.EventConfig); got != 0 {
		t.Errorf("config events: got %d, want 0", got)
	}
}

// TestApplyChangesOnlyTheDifference: a new MTU touches MTUs, not MACs.
func TestApplyChangesOnlyTheDifference(t *testing.T) {
	l := newLagg(t, func(o *lagg.Options) { o.Proto = lagg.ProtoFailover })
	tp := touchPorts(65535, wireEnds(1500, 1500)...)
	addPorts(t, l, tp[0], tp[1])
	var log eventLog
	l.SetEventHandler(log.add)
	macs := tp[0].macSets.Load() + tp[1].macSets.Load()
	if err := l.Update(func(c *lagg.Config) { c.MTU = 4000 }); err != nil {
		t.Fatal(err)
	}
	checkMTUs(t, "after MTU 4000", 4000, tp[0], tp[1])
	if got := tp[0].macSets.Load() + tp[1].macSets.Load(); got != macs {
		t.Errorf("MAC set %d times by an MTU change, want 0", got-macs)
	}
	testkit.WaitFor(t, time.Second, "config event", func() bool { return log.count(lagg.EventConfig) == 1 })
}

// TestApplyDerivedValuesReturn: removing mac and mtu from the settings goes
// back to what the ports give (the first port's MAC and MTU).
func TestApplyDerivedValuesReturn(t *testing.T) {
	l := newLagg(t, nil)
	e := wireEnds(1480, 1500)
	addPorts(t, l, e[0], e[1])
	derivedMAC := e[0].LinkAddress()
	if got := l.LinkAddress(); got != derivedMAC {
		t.Fatalf("MAC: got %v, want the first port's %v", got, derivedMAC)
	}
	set := tcpip.LinkAddress("\x06\x00\x00\x00\x00\x07")
	if err := l.Update(func(c *lagg.Config) { c.MAC, c.MTU = set, 9000 }); err != nil {
		t.Fatal(err)
	}
	checkMACs(t, "configured", set, e[0], e[1])
	checkMTUs(t, "configured", 9000, e[0], e[1])
	if err := l.Update(func(c *lagg.Config) { c.MAC, c.MTU = "", 0 }); err != nil {
		t.Fatal(err)
	}
	if got := l.LinkAddress(); got != derivedMAC {
		t.Errorf("MAC after removing it: got %v, want the derived %v", got, derivedMAC)
	}
	checkMACs(t, "derived", derivedMAC, e[0], e[1])
	checkMTUs(t, "derived", 1480, e[0], e[1])
	if got := l.MTU(); got != 1480 {
		t.Errorf("MTU after removing it: got %d, want the first port's 1480", got)
	}
}

// TestApplyRollsBackEverything: a port refusing the MTU leaves every
// setting of the same Apply as it was, the protocol and MAC included.
func TestApplyRollsBackEverything(t *testing.T) {
	l := newLagg(t, func(o *lagg.Options) { o.Proto = lagg.ProtoFailover })
	tp := touchPorts(4000, wireEnds(1500, 1500)...)
	addPorts(t, l, tp[0], tp[1])
	before := l.Config()
	mac := l.LinkAddress()
	macSets := tp[0].macSets.Load() + tp[1].macSets.Load()
	err := l.Update(func(c *lagg.Config) {
		c.Proto = lagg.ProtoLoadBalance
		c.MAC = "\x06\x00\x00\x00\x00\x09"
		c.MTU = 9000 // both refuse
		c.RxAll = false
	})
	if err == nil {
		t.Fatal("Apply with a refused MTU: got nil error")
	}
	if got := l.Config(); got != before {
		t.Errorf("config after a refused Apply: got %+v, want %+v", got, before)
	}
	if got := l.LinkAddress(); got != mac {
		t.Errorf("MAC after a refused Apply: got %v, want %v", got, mac)
	}
	if got := tp[0].macSets.Load() + tp[1].macSets.Load(); got != macSets {
		t.Errorf("port MACs set %d times by a refused Apply, want 0", got-macSets)
	}
	checkMTUs(t, "after a refused Apply", 1500, tp[0], tp[1])
	if got := l.Status().Proto; got != lagg.ProtoFailover {
		t.Errorf("protocol after a refused Apply: got %s, want failover", got)
	}
	// A bad value anywhere refuses the whole.
	if err := l.Update(func(c *lagg.Config) { c.Proto = lagg.ProtoLoadBalance; c.LACP.MaxPorts = 99 }); err == nil {
		t.Error("Apply with lacp max ports 99: got nil error")
	}
	if got := l.Config(); got != before {
		t.Errorf("config after an invalid Apply: got %+v, want %+v", got, before)
	}
}

// TestApplyRxAllUnderAnotherProtocol: rx-all set while another protocol
// runs is kept and takes effect when failover starts (it used to be
// recorded by the appliance and never applied).
func TestApplyRxAllUnderAnotherProtocol(t *testing.T) {
	l := newLagg(t, func(o *lagg.Options) { o.Proto = lagg.ProtoLoadBalance })
	e := wireEnds(1500, 1500)
	addPorts(t, l, e[0], e[1])
	if err := l.Update(func(c *lagg.Config) { c.RxAll = false }); err != nil {
		t.Fatal(err)
	}
	if err := l.Update(func(c *lagg.Config) { c.Proto = lagg.ProtoFailover }); err != nil {
		t.Fatal(err)
	}
	st := l.Status()
	if st.Failover == nil || st.Failover.RxAll {
		t.Fatalf("failover status: got %+v, want rx-all off", st.Failover)
	}
	if f := st.Port(e[1].Name()).Flags; f&lagg.PortCollecting != 0 {
		t.Errorf("standby port flags %v: collecting with rx-all off", f)
	}
}
