package lagg_test

import (
	"slices"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/lagg"
)

// removeBoth removes wire i's ports from both laggs; their links stay up,
// so the removal is what moves the traffic.
func (p *pair) removeBoth(t *testing.T, i int) {
	t.Helper()
	if err := p.a.l.RemovePort(p.portA(i)); err != nil {
		t.Fatal(err)
	}
	if err := p.b.l.RemovePort(p.portB(i)); err != nil {
		t.Fatal(err)
	}
}

// addBoth joins a new wire to both laggs with priority prio and returns its
// index.
func (p *pair) addBoth(t *testing.T, prio uint16) int {
	t.Helper()
	w := newWire(nextID(), len(p.wires))
	p.wires = append(p.wires, w)
	if err := p.a.l.AddPort(keptPort{w.A}, prio); err != nil {
		t.Fatal(err)
	}
	if err := p.b.l.AddPort(keptPort{w.B}, prio); err != nil {
		t.Fatal(err)
	}
	return len(p.wires) - 1
}

// reconfigSize is what flows while ports or protocols change.
const reconfigSize = 32 << 20

// TestPortsAddedAndRemovedDuringTransfer: removing the transmitting port,
// adding a better port and removing the backup, all while 32 MiB flow,
// loses no byte and resets nothing.
//
// The laggs have configured MACs. With MACs taken from the ports, removing
// the first port changes the lagg's MAC, and a gVisor peer ignores the
// gratuitous ARP that announces it (it only answers ARP requests for its own
// addresses and never lets an unsolicited reply override a cached MAC), so
// it keeps sending to the old MAC until neighbour unreachability detection
// gives up: the transfer survives but stalls for 30-60 s.
func TestPortsAddedAndRemovedDuringTransfer(t *testing.T) {
	p := newPair(t, "failover", 2, func(side int, o *lagg.Options) {
		o.MAC = tcpip.LinkAddress([]byte{0x02, 0, 0, 0xff, byte(side), 1})
	})
	a := p.a.l
	x := startTransfer(t, p.a, p.b, 9001, reconfigSize)

	x.WaitReceived(t, reconfigSize/5, time.Minute)
	p.removeBoth(t, 0)
	if got := a.Status().TxPort; got != p.portA(1) {
		t.Errorf("TxPort after removing port 0: got %q, want %q", got, p.portA(1))
	}

	x.WaitReceived(t, 2*reconfigSize/5, time.Minute)
	better := p.addBoth(t, 100)
	if got := a.Status().TxPort; got != p.portA(better) {
		t.Errorf("TxPort after adding a port with priority 100: got %q, want %q", got, p.portA(better))
	}

	x.WaitReceived(t, 3*reconfigSize/5, time.Minute)
	p.removeBoth(t, 1)
	x.WaitReceived(t, 4*reconfigSize/5, time.Minute)
	backup := p.addBoth(t, lagg.DefaultPriority)
	x.Wait(t, 2*time.Minute)

	if got, want := a.Ports(), []string{p.portA(better), p.portA(backup)}; !slices.Equal(got, want) {
		t.Errorf("ports: got %v, want %v", got, want)
	}
	if got := portStatus(t, a, p.portA(better)).Counters.TxFrames; got < 10000 {
		t.Errorf("frames sent on the added port: got %d, want >= 10000", got)
	}
	for _, i := range []int{0, 1} {
		if got, want := p.wires[i].A.LinkAddress(), mac(1, i); got != want {
			t.Errorf("removed port %s MAC: got %v, want its own %v back", p.portA(i), got, want)
		}
	}
}

// TestProtocolSwitchDuringTransfer: failover → loadbalance → failover on
// both sides while 32 MiB flow; the transfer completes intact.
func TestProtocolSwitchDuringTransfer(t *testing.T) {
	p := newPair(t, "failover", 2, nil)
	x := startTransfer(t, p.a, p.b, 9002, reconfigSize)
	for i, proto := range []string{"loadbalance", "failover"} {
		x.WaitReceived(t, int64(i+1)*reconfigSize/3, time.Minute)
		for _, n := range []*node{p.a, p.b} {
			if err := n.l.Update(func(c *lagg.Config) { c.Proto = lagg.Proto(proto) }); err != nil {
				t.Fatal(err)
			}
			if got := n.l.Config().Proto; string(got) != proto {
				t.Fatalf("Proto after SetProto(%q): got %q", proto, got)
			}
		}
	}
	x.Wait(t, 2*time.Minute)
	st := p.a.l.Status()
	if len(st.Ports) != 2 {
		t.Errorf("ports after two protocol switches: got %d, want 2", len(st.Ports))
	}
	if st.TxPort != p.portA(0) {
		t.Errorf("TxPort back on failover: got %q, want %q", st.TxPort, p.portA(0))
	}
}
