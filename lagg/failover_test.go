package lagg_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

const transferSize = 64 << 20

// TestFailoverPullActiveLink: ping, TCP echo and a 64 MiB transfer over two
// wires; pulling the active port's wire mid-transfer moves traffic to the
// other port with no reset and no corruption.
func TestFailoverPullActiveLink(t *testing.T) {
	p := newPair(t, "failover", 2, nil)
	a := p.a.l

	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 10*time.Second); err != nil {
		t.Fatalf("ping v4: %v", err)
	}
	if err := testkit.Ping(p.a.s, v6B, 10*time.Second); err != nil {
		t.Fatalf("ping v6: %v", err)
	}
	testkit.ServeEcho(t, p.b.listen(t, 7))
	testkit.CheckEcho(t, p.a.dialer(p.b, 7), bytes.Repeat([]byte("ulagg"), 2000))

	st := a.Status()
	if st.TxPort != p.portA(0) {
		t.Fatalf("TxPort before the pull: got %q, want %q", st.TxPort, p.portA(0))
	}
	failovers := st.Failovers

	x := startTransfer(t, p.a, p.b, 9000, transferSize)
	x.WaitReceived(t, transferSize/4, time.Minute)
	newTx := portStatus(t, a, p.portA(1)).Counters.TxFrames
	p.wires[0].SetLinkUp(false)
	x.Wait(t, 2*time.Minute)

	st = a.Status()
	if st.TxPort != p.portA(1) {
		t.Errorf("TxPort after the pull: got %q, want %q", st.TxPort, p.portA(1))
	}
	if st.Failovers != failovers+1 {
		t.Errorf("Failovers: got %d, want %d", st.Failovers, failovers+1)
	}
	if st.LastFailover <= 0 {
		t.Errorf("LastFailover: got %v, want > 0", st.LastFailover)
	}
	// Three quarters of 64 MiB is over 30000 full-size segments.
	if got := st.Port(p.portA(1)).Counters.TxFrames - newTx; got < 30000 {
		t.Errorf("frames sent on the new port during the transfer: got %d, want >= 30000", got)
	}
	if got := portStatus(t, p.b.l, p.portB(1)).Counters.RxFrames; got < 30000 {
		t.Errorf("frames the peer received on its new port: got %d, want >= 30000", got)
	}
	if got := p.b.l.Status().TxPort; got != p.portB(1) {
		t.Errorf("peer TxPort after the pull: got %q, want %q", got, p.portB(1))
	}
	testkit.CheckEcho(t, p.a.dialer(p.b, 7), []byte("still there"))
}

// TestFailoverRxAll: with rx-all off, frames arriving on the standby port
// are dropped, counted and never reach the stack; with it on they do.
func TestFailoverRxAll(t *testing.T) {
	// B adds its wire-1 end first, so B transmits on wire 1 from the start
	// (before its stack says anything) while A transmits on wire 0: all B
	// sends arrives on A's standby port.
	id := nextID()
	w0, w1 := newWire(id, 0), newWire(id, 1)
	p := newPairWith(t, id, "failover", []*linkeptest.Wire{w0, w1},
		[]linkep.Port{w0.A, w1.A}, []linkep.Port{w1.B, w0.B},
		func(side int, o *lagg.Options) { o.RxAll = side == 1 }) // A: off, B: on
	a := p.a.l
	if got := a.Status().Failover; got == nil || got.RxAll {
		t.Fatalf("A failover status: got %+v, want RxAll false", got)
	}
	if got := a.Status().TxPort; got != p.portA(0) {
		t.Fatalf("A TxPort: got %q, want %q", got, p.portA(0))
	}
	if got := p.b.l.Status().TxPort; got != p.portB(1) {
		t.Fatalf("B TxPort: got %q, want %q", got, p.portB(1))
	}
	if got := portStatus(t, a, p.portA(1)).Flags; got&lagg.PortCollecting != 0 {
		t.Errorf("A standby port flags with rx-all off: got %v, want no COLLECTING", got)
	}

	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 600*time.Millisecond); err == nil {
		t.Fatal("ping with rx-all off: got a reply, want none (replies come in on the standby port)")
	}
	testkit.WaitFor(t, 5*time.Second, "drops on A's standby port", func() bool {
		return portStatus(t, a, p.portA(1)).Counters.Drop(lagg.DropInactivePort) > 0
	})
	standby := portStatus(t, a, p.portA(1)).Counters
	if standby.RxFrames != 0 {
		t.Errorf("standby port RxFrames with rx-all off: got %d, want 0", standby.RxFrames)
	}
	if got := a.Status().Counters.Drop(lagg.DropInactivePort); got < standby.Drop(lagg.DropInactivePort) {
		t.Errorf("lagg DropInactivePort: got %d, want >= the port's %d", got, standby.Drop(lagg.DropInactivePort))
	}
	if got := p.a.s.NICInfo()[nicID].Stats.Rx.Packets.Value(); got != 0 {
		t.Errorf("A's stack received %d packets with rx-all off, want 0", got)
	}

	if err := a.Update(func(c *lagg.Config) { c.RxAll = true }); err != nil {
		t.Fatal(err)
	}
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 10*time.Second); err != nil {
		t.Fatalf("ping with rx-all on: %v", err)
	}
	ps := portStatus(t, a, p.portA(1))
	if ps.Counters.RxFrames == 0 {
		t.Errorf("standby port RxFrames with rx-all on: got 0, want > 0")
	}
	if ps.Flags&lagg.PortCollecting == 0 {
		t.Errorf("standby port flags with rx-all on: got %v, want COLLECTING", ps.Flags)
	}
	if got := p.a.s.NICInfo()[nicID].Stats.Rx.Packets.Value(); got == 0 {
		t.Errorf("A's stack received no packets with rx-all on, want > 0")
	}
}

// TestFailoverPreemption: the better (smaller priority value) port takes
// the traffic back as soon as its link returns.
func TestFailoverPreemption(t *testing.T) {
	p := newPair(t, "failover", 2, nil)
	a := p.a.l
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.wires[0].SetLinkUp(false)
	if got := a.Status().TxPort; got != p.portA(1) {
		t.Fatalf("TxPort with port 0 down: got %q, want %q", got, p.portA(1))
	}
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 10*time.Second); err != nil {
		t.Fatalf("ping on the backup port: %v", err)
	}
	before := portStatus(t, a, p.portA(0)).Counters.TxFrames
	p.wires[0].SetLinkUp(true)
	st := a.Status()
	if st.TxPort != p.portA(0) {
		t.Fatalf("TxPort after port 0 came back: got %q, want %q", st.TxPort, p.portA(0))
	}
	if st.Failovers != 2 {
		t.Errorf("Failovers: got %d, want 2", st.Failovers)
	}
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 10*time.Second); err != nil {
		t.Fatalf("ping after pre-emption: %v", err)
	}
	if got := portStatus(t, a, p.portA(0)).Counters.TxFrames; got <= before {
		t.Errorf("port 0 TxFrames after pre-emption: got %d, want > %d", got, before)
	}

	// A priority change pre-empts too.
	if err := a.SetPortPriority(p.portA(1), 10); err != nil {
		t.Fatal(err)
	}
	if got := a.Status().TxPort; got != p.portA(1) {
		t.Errorf("TxPort after giving port 1 priority 10: got %q, want %q", got, p.portA(1))
	}
}

// announcement is what a frame announced, if it was a gratuitous ARP or an
// unsolicited neighbour advertisement.
type announcement struct {
	kind   string // "garp" or "na"
	srcMAC tcpip.LinkAddress
	addr   tcpip.Address
	mac    tcpip.LinkAddress // ARP sender MAC or the NA's target link-layer address
}

func parseAnnouncement(frame []byte) (announcement, bool) {
	if len(frame) < header.EthernetMinimumSize {
		return announcement{}, false
	}
	eth := header.Ethernet(frame)
	body := frame[header.EthernetMinimumSize:]
	switch eth.Type() {
	case header.ARPProtocolNumber:
		arp := header.ARP(body)
		if !arp.IsValid() || arp.Op() != header.ARPRequest {
			return announcement{}, false
		}
		spa, tpa := tcpip.AddrFromSlice(arp.ProtocolAddressSender()), tcpip.AddrFromSlice(arp.ProtocolAddressTarget())
		if spa != tpa {
			return announcement{}, false
		}
		return announcement{kind: "garp", srcMAC: eth.SourceAddress(), addr: spa,
			mac: tcpip.LinkAddress(arp.HardwareAddressSender())}, true
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(body)
		// Announcements carry no extension headers: ICMPv6 must be the
		// next header for the payload to be the message.
		if !ip.IsValid(len(body)) || ip.NextHeader() != uint8(header.ICMPv6ProtocolNumber) {
			return announcement{}, false
		}
		icmp := header.ICMPv6(ip.Payload())
		if len(icmp) < header.ICMPv6NeighborAdvertMinimumSize || icmp.Type() != header.ICMPv6NeighborAdvert {
			return announcement{}, false
		}
		na := header.NDPNeighborAdvert(icmp.MessageBody())
		if !na.OverrideFlag() || na.SolicitedFlag() {
			return announcement{}, false
		}
		a := announcement{kind: "na", srcMAC: eth.SourceAddress(), addr: na.TargetAddress()}
		it, err := na.Options().Iter(true)
		if err != nil {
			return announcement{}, false
		}
		for {
			opt, done, err := it.Next()
			if err != nil || done {
				break
			}
			if tll, ok := opt.(header.NDPTargetLinkLayerAddressOption); ok {
				a.mac = tll.EthernetAddress()
			}
		}
		return a, true
	}
	return announcement{}, false
}

// announcements records the announcements end sends on w.
func announcements(w *linkeptest.Wire, end *linkeptest.WireEnd) func() []announcement {
	var mu sync.Mutex
	var got []announcement
	w.SetObserver(func(from *linkeptest.WireEnd, frame []byte) {
		if from != end {
			return
		}
		if a, ok := parseAnnouncement(frame); ok {
			mu.Lock()
			got = append(got, a)
			mu.Unlock()
		}
	})
	return func() []announcement {
		mu.Lock()
		defer mu.Unlock()
		return append([]announcement(nil), got...)
	}
}

func hasAnnouncement(got []announcement, want announcement) bool {
	for _, a := range got {
		if a == want {
			return true
		}
	}
	return false
}

// TestAnnounceOnFailoverAndMACChange: pulling the active port makes the
// stack announce its IPv4 and IPv6 addresses on the new port (gratuitous
// ARP, unsolicited NA with override); so does a MAC change. Each is done
// several times: the announcement must go out on the new port with the new
// MAC every time, not just usually.
func TestAnnounceOnFailoverAndMACChange(t *testing.T) {
	p := newPair(t, "failover", 2, nil)
	a := p.a.l
	v4 := tcpip.AddrFromSlice(p.a.addr.Addr().AsSlice())
	v6 := tcpip.AddrFromSlice(v6A.AsSlice())
	laggMAC := a.LinkAddress()
	want := func(mac tcpip.LinkAddress) []announcement {
		return []announcement{
			{kind: "garp", srcMAC: mac, addr: v4, mac: mac},
			{kind: "na", srcMAC: mac, addr: v6, mac: mac},
		}
	}

	seen1 := announcements(p.wires[1], p.wires[1].A)
	for i := range 10 {
		before := len(seen1())
		p.wires[0].SetLinkUp(false)
		for _, w := range want(laggMAC) {
			testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("failover %d: %s on the new port", i, w.kind),
				func() bool { return hasAnnouncement(seen1()[before:], w) })
		}
		p.wires[0].SetLinkUp(true)
	}

	seen0 := announcements(p.wires[0], p.wires[0].A)
	for i := range 10 {
		newMAC := tcpip.LinkAddress([]byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, byte(i)})
		before := len(seen0())
		if err := a.Update(func(c *lagg.Config) { c.MAC = newMAC }); err != nil {
			t.Fatal(err)
		}
		for _, w := range want(newMAC) {
			testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("MAC change %d: %s with the new MAC", i, w.kind),
				func() bool { return hasAnnouncement(seen0()[before:], w) })
		}
	}
	// A peer that has no entry for us yet resolves the new MAC.
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 10*time.Second); err != nil {
		t.Fatalf("ping after the MAC changes: %v", err)
	}
}
