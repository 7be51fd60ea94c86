package lagg_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

func TestMaxPorts(t *testing.T) {
	l := newLagg(t, nil)
	mtus := make([]uint32, lagg.MaxPorts+1)
	for i := range mtus {
		mtus[i] = 1500
	}
	e := wireEnds(mtus...)
	for i := range lagg.MaxPorts {
		if err := l.AddPort(e[i], lagg.DefaultPriority); err != nil {
			t.Fatalf("port %d of %d: %v", i+1, lagg.MaxPorts, err)
		}
	}
	err := l.AddPort(e[lagg.MaxPorts], lagg.DefaultPriority)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("maximum of %d ports", lagg.MaxPorts)) {
		t.Fatalf("port %d: got error %v, want one saying the maximum is %d", lagg.MaxPorts+1, err, lagg.MaxPorts)
	}
	if got := len(l.Ports()); got != lagg.MaxPorts {
		t.Errorf("ports: got %d, want %d", got, lagg.MaxPorts)
	}
	// Removing one makes room again.
	remove(t, l, e[0].Name())
	if err := l.AddPort(e[lagg.MaxPorts], lagg.DefaultPriority); err != nil {
		t.Errorf("adding port %d after a removal: %v", lagg.MaxPorts+1, err)
	}
}

// TestPortNameClaimedOnce: a port name (an interface) belongs to one lagg
// at a time, and a refused add leaves everything as it was.
func TestPortNameClaimedOnce(t *testing.T) {
	l1, l2 := newLagg(t, nil), newLagg(t, nil)
	id := nextID()
	first, twin := newWire(id, 0), newWire(id, 0) // same names, different ends
	addPorts(t, l1, first.A)
	for _, tc := range []struct {
		name string
		l    *lagg.Lagg
		want string
	}{
		{"same lagg", l1, "already a port of " + l1.Name()},
		{"other lagg", l2, "port of another lagg, " + l1.Name()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.AddPort(twin.A, lagg.DefaultPriority)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AddPort(%s): got %v, want an error containing %q", twin.A.Name(), err, tc.want)
			}
			if got, want := l1.Ports(), []string{first.A.Name()}; !slices.Equal(got, want) {
				t.Errorf("%s ports: got %v, want %v", l1.Name(), got, want)
			}
			if got := len(l2.Ports()); got != 0 {
				t.Errorf("%s ports: got %d, want 0", l2.Name(), got)
			}
			if got, want := twin.A.LinkAddress(), mac(1, 0); got != want {
				t.Errorf("refused port MAC: got %v, want %v untouched", got, want)
			}
		})
	}
	// Once the first lagg lets go, the name is free.
	remove(t, l1, first.A.Name())
	if err := l2.AddPort(twin.A, lagg.DefaultPriority); err != nil {
		t.Errorf("adding the name after it was released: %v", err)
	}
}

func TestUnknownNames(t *testing.T) {
	l := newLagg(t, nil)
	addPorts(t, l, wireEnds(1500)[0])
	if err := l.RemovePort("nosuch0"); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("RemovePort(nosuch0): got %v, want an error naming the port", err)
	}
	if err := l.SetPortPriority("nosuch0", 1); err == nil {
		t.Errorf("SetPortPriority(nosuch0): got nil error, want one")
	}
	if err := l.Update(func(c *lagg.Config) { c.Proto = "carrierpigeon" }); err == nil || !strings.Contains(err.Error(), "unknown protocol") {
		t.Errorf("Proto carrierpigeon: got %v, want unknown protocol", err)
	}
	if got := l.Config().Proto; got != lagg.ProtoFailover {
		t.Errorf("Proto after a refused change: got %q, want failover", got)
	}
	o := options("badproto", "carrierpigeon")
	if l2, err := lagg.New(o); err == nil {
		l2.Close()
		t.Errorf("New with protocol carrierpigeon: got nil error, want one")
	}
	if err := l.Update(func(c *lagg.Config) { c.Proto = lagg.ProtoLoadBalance }); err != nil {
		t.Fatal(err)
	}
	if got := len(l.Ports()); got != 1 {
		t.Errorf("ports after protocol changes: got %d, want 1", got)
	}
}

// TestProtoNone: none passes nothing in either direction but keeps its
// ports; the frames are counted as dropped.
func TestProtoNone(t *testing.T) {
	p := newPair(t, "failover", 2, func(side int, o *lagg.Options) {
		if side == 0 {
			o.Proto = "none"
		}
	})
	a := p.a.l
	st := a.Status()
	if st.Up || st.TxPort != "" || len(st.Ports) != 2 {
		t.Fatalf("none status: got Up %v TxPort %q %d ports, want down, no TxPort, 2 ports", st.Up, st.TxPort, len(st.Ports))
	}
	for _, ps := range st.Ports {
		if ps.Flags != lagg.PortActive {
			t.Errorf("port %s flags: got %v, want ACTIVE only", ps.Name, ps.Flags)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := gonet.DialContextTCP(ctx, p.a.s, fullAddr(p.b.addr, 7), ipv4.ProtocolNumber); err == nil {
		c.Close()
		t.Fatal("TCP connect out of a none lagg: got a connection, want a failure")
	}
	if got := a.Status().Counters.Drop(lagg.DropNoPort); got == 0 {
		t.Errorf("DropNoPort after sending: got 0, want > 0")
	}
	// The peer's frames reach our ports and stop there.
	if err := testkit.Ping(p.b.s, p.a.addr.Addr(), 500*time.Millisecond); err == nil {
		t.Fatal("ping into a none lagg: got a reply, want none")
	}
	testkit.WaitFor(t, 5*time.Second, "inactive-port drops", func() bool {
		return a.Status().Counters.Drop(lagg.DropInactivePort) > 0
	})
	if got := a.Status().Counters.RxFrames; got != 0 {
		t.Errorf("RxFrames: got %d, want 0", got)
	}
	if got := p.a.s.NICInfo()[nicID].Stats.Rx.Packets.Value(); got != 0 {
		t.Errorf("packets that reached the stack: got %d, want 0", got)
	}
	if got := len(a.Ports()); got != 2 {
		t.Errorf("ports: got %d, want 2 kept", got)
	}
	// Switching to a real protocol makes the same ports carry traffic.
	if err := a.Update(func(c *lagg.Config) { c.Proto = lagg.Proto("failover") }); err != nil {
		t.Fatal(err)
	}
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 10*time.Second); err != nil {
		t.Errorf("ping after switching from none to failover: %v", err)
	}
}

// TestNoActivePortDropsTx: failover and loadbalance with every link down,
// or with no port at all, drop and count what the stack sends.
func TestNoActivePortDropsTx(t *testing.T) {
	for _, proto := range []string{"failover", "loadbalance"} {
		for _, nports := range []int{0, 2} {
			t.Run(fmt.Sprintf("%s/%d ports", proto, nports), func(t *testing.T) {
				l, err := lagg.New(options(fmt.Sprintf("down%d", nextID()), proto))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(l.Close)
				id := nextID()
				for i := range nports {
					w := newWire(id, i)
					w.SetLinkUp(false)
					if err := l.AddPort(w.A, lagg.DefaultPriority); err != nil {
						t.Fatal(err)
					}
				}
				if st := l.Status(); st.Up {
					t.Errorf("Up: got true, want false")
				}
				pkt := tcp4(40000, 80).packet()
				defer pkt.DecRef()
				var list stack.PacketBufferList
				list.PushBack(pkt)
				n, terr := l.WritePackets(list)
				if n != 0 || terr == nil {
					t.Errorf("WritePackets: got %d, %v, want 0 and an error", n, terr)
				}
				if got := l.Status().Counters.Drop(lagg.DropNoPort); got != 1 {
					t.Errorf("DropNoPort: got %d, want 1", got)
				}
				if got := l.SelectTxPort(pkt); got != "" {
					t.Errorf("SelectTxPort: got %q, want none", got)
				}
			})
		}
	}
}

// TestDelays: a link that flaps for less than the down delay never takes
// its port out; a longer outage does, but only after the delay; a port that
// comes back is used only after the up delay.
func TestDelays(t *testing.T) {
	const delay = 500 * time.Millisecond
	p := newPair(t, "failover", 2, nil)
	a := p.a.l
	a.Update(func(c *lagg.Config) { c.UpDelay, c.DownDelay = 0, delay })
	p.b.l.Update(func(c *lagg.Config) { c.UpDelay, c.DownDelay = 0, delay })

	// A short flap on port 0.
	p.wires[0].SetLinkUp(false)
	if ps := portStatus(t, a, p.portA(0)); ps.LinkUp || !ps.Active {
		t.Fatalf("port 0 right after losing its link: got LinkUp %v Active %v, want false, true (down delay)", ps.LinkUp, ps.Active)
	}
	if got := a.Status().TxPort; got != p.portA(0) {
		t.Fatalf("TxPort within the down delay: got %q, want %q", got, p.portA(0))
	}
	p.wires[0].SetLinkUp(true)

	// A long outage on port 1, started after the flap: its port leaves once
	// the delay has passed, which is after port 0's delay would have ended.
	start := time.Now()
	p.wires[1].SetLinkUp(false)
	testkit.WaitFor(t, 10*time.Second, "port 1 to become inactive", func() bool { return !portStatus(t, a, p.portA(1)).Active })
	if took := time.Since(start); took < delay {
		t.Errorf("port 1 left after %v, want >= the down delay %v", took, delay)
	}
	st := a.Status()
	if st.Failovers != 0 || st.TxPort != p.portA(0) || !st.Port(p.portA(0)).Active {
		t.Errorf("after the short flap: got Failovers %d TxPort %q port 0 active %v, want 0, %q, true",
			st.Failovers, st.TxPort, st.Port(p.portA(0)).Active, p.portA(0))
	}
	p.wires[1].SetLinkUp(true)

	// Up delay: port 0 goes down at once and comes back only after the delay.
	a.Update(func(c *lagg.Config) { c.UpDelay, c.DownDelay = delay, 0 })
	p.b.l.Update(func(c *lagg.Config) { c.UpDelay, c.DownDelay = delay, 0 })
	testkit.WaitFor(t, 10*time.Second, "port 1 back", func() bool { return portStatus(t, a, p.portA(1)).Active })
	p.wires[0].SetLinkUp(false)
	if got := a.Status().TxPort; got != p.portA(1) {
		t.Fatalf("TxPort after port 0 went down with no down delay: got %q, want %q", got, p.portA(1))
	}
	start = time.Now()
	p.wires[0].SetLinkUp(true)
	if ps := portStatus(t, a, p.portA(0)); !ps.LinkUp || ps.Active {
		t.Errorf("port 0 right after its link returned: got LinkUp %v Active %v, want true, false (up delay)", ps.LinkUp, ps.Active)
	}
	testkit.WaitFor(t, 10*time.Second, "port 0 to transmit again", func() bool { return a.Status().TxPort == p.portA(0) })
	if took := time.Since(start); took < delay {
		t.Errorf("port 0 transmitted again after %v, want >= the up delay %v", took, delay)
	}
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 10*time.Second); err != nil {
		t.Errorf("ping after the delays: %v", err)
	}
}

// goneWires builds a pair whose side A port 0 can report its interface gone.
// The laggs have configured MACs so that losing a port changes no MAC (a
// gVisor peer would ignore the announcement of a new one; see
// TestPortsAddedAndRemovedDuringTransfer).
func goneWires(t *testing.T) (*pair, *goneablePort) {
	t.Helper()
	id := nextID()
	w0, w1 := newWire(id, 0), newWire(id, 1)
	gone := &goneablePort{keptPort: keptPort{w0.A}}
	p := newPairWith(t, id, "failover", []*linkeptest.Wire{w0, w1},
		[]linkep.Port{gone, w1.A}, []linkep.Port{w0.B, w1.B},
		func(side int, o *lagg.Options) { o.MAC = tcpip.LinkAddress([]byte{0x02, 0, 0, 0xfe, byte(side), 1}) })
	return p, gone
}

// TestPortGone: a port whose interface disappears is removed, and traffic
// moves to the other port.
func TestPortGone(t *testing.T) {
	p, gone := goneWires(t)
	a := p.a.l
	testkit.ServeEcho(t, p.b.listen(t, 7))
	testkit.CheckEcho(t, p.a.dialer(p.b, 7), []byte("before"))

	p.wires[0].SetPassing(false) // the interface is gone: nothing passes
	gone.gone()
	if got, want := a.Ports(), []string{p.portA(1)}; !slices.Equal(got, want) {
		t.Fatalf("ports after Gone: got %v, want %v", got, want)
	}
	if got := a.Status().TxPort; got != p.portA(1) {
		t.Errorf("TxPort after Gone: got %q, want %q", got, p.portA(1))
	}
	p.wires[0].SetLinkUp(false) // and the peer sees its carrier drop
	testkit.CheckEcho(t, p.a.dialer(p.b, 7), []byte("after"))
	// The release runs in the background; then the name is free again.
	testkit.WaitFor(t, 10*time.Second, "the gone port to be released", func() bool {
		return !gone.IsAttached() && gone.LinkAddress() == mac(1, 0)
	})
	other := newLagg(t, nil)
	if err := other.AddPort(gone, lagg.DefaultPriority); err != nil {
		t.Errorf("adding the released name to another lagg: %v", err)
	}
}
