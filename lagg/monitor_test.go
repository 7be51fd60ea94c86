package lagg_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// responder is a far wire end that answers ARP probes and neighbour
// solicitations for its targets, on its own wire only: a switch port with
// the target behind it.
type responder struct {
	end *linkeptest.WireEnd
	mac tcpip.LinkAddress

	mu sync.Mutex
	// +checklocks:mu
	targets map[netip.Addr]bool
	// +checklocks:mu
	cache map[netip.Addr]tcpip.LinkAddress // what a target learned from requests: must stay empty
}

func newResponder(end *linkeptest.WireEnd, targets ...netip.Addr) *responder {
	r := &responder{end: end, mac: end.LinkAddress(), targets: map[netip.Addr]bool{}, cache: map[netip.Addr]tcpip.LinkAddress{}}
	for _, t := range targets {
		r.targets[t] = true
	}
	end.Attach(r)
	return r
}

func (r *responder) answers(t netip.Addr, on bool) {
	r.mu.Lock()
	r.targets[t] = on
	r.mu.Unlock()
}

func (r *responder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (r *responder) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	frame := append(append([]byte(nil), pkt.LinkHeader().Slice()...), pkt.Data().AsRange().ToSlice()...)
	if len(frame) < header.EthernetMinimumSize {
		return
	}
	body := frame[header.EthernetMinimumSize:]
	switch proto {
	case header.ARPProtocolNumber:
		a := header.ARP(body)
		if !a.IsValid() || a.Op() != header.ARPRequest {
			return
		}
		t := netip.AddrFrom4([4]byte(a.ProtocolAddressTarget()))
		sender := netip.AddrFrom4([4]byte(a.ProtocolAddressSender()))
		r.mu.Lock()
		ok := r.targets[t]
		if !sender.IsUnspecified() { // RFC 5227: a probe is not cached
			r.cache[sender] = tcpip.LinkAddress(a.HardwareAddressSender())
		}
		r.mu.Unlock()
		if !ok {
			return
		}
		b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
		sha := tcpip.LinkAddress(a.HardwareAddressSender())
		header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: r.mac, DstAddr: sha, Type: header.ARPProtocolNumber})
		rep := header.ARP(b[header.EthernetMinimumSize:])
		rep.SetIPv4OverEthernet()
		rep.SetOp(header.ARPReply)
		copy(rep.HardwareAddressSender(), r.mac)
		copy(rep.ProtocolAddressSender(), a.ProtocolAddressTarget())
		copy(rep.HardwareAddressTarget(), sha)
		copy(rep.ProtocolAddressTarget(), a.ProtocolAddressSender())
		r.send(b)
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(body)
		if len(body) < header.IPv6MinimumSize+24 || ip.NextHeader() != uint8(header.ICMPv6ProtocolNumber) {
			return
		}
		icmp := header.ICMPv6(ip.Payload())
		if icmp.Type() != header.ICMPv6NeighborSolicit {
			return
		}
		t := netip.AddrFrom16([16]byte(icmp[8:24]))
		r.mu.Lock()
		ok := r.targets[t]
		r.mu.Unlock()
		if !ok {
			return
		}
		const icmpLen = header.ICMPv6NeighborAdvertMinimumSize + 8
		b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+icmpLen)
		dstMAC := header.Ethernet(frame).SourceAddress()
		header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: r.mac, DstAddr: dstMAC, Type: header.IPv6ProtocolNumber})
		src, dst := tcpip.AddrFrom16(t.As16()), ip.SourceAddress()
		header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
			PayloadLength: icmpLen, TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 255, SrcAddr: src, DstAddr: dst,
		})
		na := header.ICMPv6(b[header.EthernetMinimumSize+header.IPv6MinimumSize:])
		na.SetType(header.ICMPv6NeighborAdvert)
		na[4] = 0x60 // solicited, override
		tt := t.As16()
		copy(na[8:24], tt[:])
		na[24], na[25] = 2, 1
		copy(na[26:32], r.mac)
		na.SetChecksum(^checksum.Checksum(na, header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, src, dst, icmpLen)))
		r.send(b)
	}
}

func (r *responder) send(frame []byte) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	defer pkt.DecRef()
	var l stack.PacketBufferList
	l.PushBack(pkt)
	_, _ = r.end.WritePackets(l)
}

// monRig is a lagg on a fake clock whose ports each reach a responder on a
// wire of their own.
type monRig struct {
	l      *lagg.Lagg
	clk    *testkit.FakeClock
	wires  []*linkeptest.Wire
	resp   []*responder
	names  []string
	events chan lagg.Event
	// answering[i]: targets whose replies reach port i each interval;
	// want[i]: the replies port i should have counted by now.
	answering []int
	want      []uint64
}

var (
	target4  = netip.MustParseAddr("10.0.0.1")
	target4b = netip.MustParseAddr("10.0.0.2")
	target6  = netip.MustParseAddr("fd00::1")
)

const monInterval = 100 * time.Millisecond

func newMonRig(t *testing.T, proto string, nports int, mon lagg.MonitorOptions, tweak func(o *lagg.Options)) *monRig {
	t.Helper()
	id := nextID()
	o := options(fmt.Sprintf("mon%d", id), proto)
	r := &monRig{clk: testkit.NewFakeClock(time.Unix(1000, 0)), events: make(chan lagg.Event, 256)}
	o.Clock = r.clk
	o.Monitor = &mon
	if tweak != nil {
		tweak(&o)
	}
	l, err := lagg.New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.l = l
	t.Cleanup(l.Close)
	l.SetEventHandler(func(ev lagg.Event) {
		if ev.Kind == lagg.EventMonitor {
			r.events <- ev
		}
	})
	var d countingDispatcher
	l.Attach(&d)
	for i := range nports {
		w := newWire(id, i)
		targets := len(mon.ARPTargets) + len(mon.NSTargets)
		r.resp = append(r.resp, newResponder(w.B, target4, target4b, target6))
		t.Cleanup(w.B.Close)
		if err := l.AddPort(w.A, uint16(100+i)); err != nil {
			t.Fatal(err)
		}
		r.wires = append(r.wires, w)
		r.names = append(r.names, w.A.Name())
		r.answering = append(r.answering, targets)
		r.want = append(r.want, 0)
	}
	return r
}

// step moves the fake clock one interval (the lagg judges the interval
// that ended and probes again), then waits in real time until the replies
// the responders give to the new probes are in.
func (r *monRig) step(t *testing.T) {
	t.Helper()
	r.clk.Advance(monInterval)
	for i := range r.wires {
		r.want[i] += uint64(r.answering[i])
	}
	var why string
	if !testkit.Poll(5*time.Second, func() bool {
		st := r.l.Status()
		for i, name := range r.names {
			ps := st.Port(name)
			if ps == nil || ps.Monitor == nil {
				why = name + ": no monitor status"
				return false
			}
			if ps.Monitor.Replies < r.want[i] {
				why = fmt.Sprintf("%s: %d replies, want %d", name, ps.Monitor.Replies, r.want[i])
				return false
			}
		}
		return true
	}) {
		t.Fatalf("replies not in after 5 s: %s", why)
	}
}

// setPassing makes wire i pass frames or lose them all, carrier up;
// answering is how many targets answer through it when it passes.
func (r *monRig) setPassing(i int, pass bool, answering int) {
	r.wires[i].SetPassing(pass)
	r.answering[i] = 0
	if pass {
		r.answering[i] = answering
	}
}

func (r *monRig) monitor(t *testing.T, i int) lagg.PortMonitorStatus {
	t.Helper()
	ps := portStatus(t, r.l, r.names[i])
	if ps.Monitor == nil {
		t.Fatalf("%s: no monitor status", r.names[i])
	}
	return *ps.Monitor
}

// stepsUntil steps until cond holds and returns how many steps it took,
// failing after max.
func (r *monRig) stepsUntil(t *testing.T, max int, what string, cond func() bool) int {
	t.Helper()
	for n := 1; n <= max; n++ {
		r.step(t)
		if cond() {
			return n
		}
	}
	t.Fatalf("%s: not after %d intervals", what, max)
	return 0
}

func (r *monRig) event(t *testing.T) lagg.Event {
	t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no monitor event within 5 s")
	}
	return lagg.Event{}
}

func arpMon(targets ...netip.Addr) lagg.MonitorOptions {
	return lagg.MonitorOptions{ARPTargets: targets, Interval: monInterval, MissedMax: 3}
}

// TestLinkMonitorFailover: the transmitting port's wire loses every frame with
// carrier up; its probes go unanswered, it is monitor-down within
// missed_max+1 intervals, failover moves, and it comes back once answered.
func TestLinkMonitorFailover(t *testing.T) {
	r := newMonRig(t, "failover", 2, arpMon(target4), nil)
	r.step(t)
	if st := r.l.Status(); st.TxPort != r.names[0] {
		t.Fatalf("tx port: got %q, want %q", st.TxPort, r.names[0])
	}
	r.setPassing(0, false, 0)
	n := r.stepsUntil(t, 10, "port 0 monitor-down", func() bool { return !r.monitor(t, 0).Up })
	if n < 3 || n > 4 {
		t.Errorf("monitor-down after %d intervals, want missed_max (3) to missed_max+1", n)
	}
	st := r.l.Status()
	if st.TxPort != r.names[1] {
		t.Errorf("tx port after the loss: got %q, want %q", st.TxPort, r.names[1])
	}
	ps := st.Port(r.names[0])
	if !ps.LinkUp || ps.Active || ps.Flags&lagg.PortActive != 0 {
		t.Errorf("port 0: link %v active %v flags %v, want link up, inactive", ps.LinkUp, ps.Active, ps.Flags)
	}
	if m := ps.Monitor; m.Reason != "arp 10.0.0.1 unanswered 3×" || m.Failures != 1 {
		t.Errorf("port 0 monitor: reason %q failures %d, want %q, 1", m.Reason, m.Failures, "arp 10.0.0.1 unanswered 3×")
	}
	if ev := r.event(t); ev.Port != r.names[0] || ev.Up || ev.Detail != "arp 10.0.0.1 unanswered 3×" {
		t.Errorf("event: got %+v, want port 0 down, arp 10.0.0.1 unanswered 3×", ev)
	}
	if m := r.monitor(t, 1); !m.Up || m.Missed != 0 {
		t.Errorf("port 1 monitor: got %+v, want up", m)
	}
	r.setPassing(0, true, 1)
	if n := r.stepsUntil(t, 5, "port 0 monitor-up", func() bool { return r.monitor(t, 0).Up }); n > 2 {
		t.Errorf("monitor-up after %d intervals, want <= 2", n)
	}
	if st := r.l.Status(); st.TxPort != r.names[0] {
		t.Errorf("tx port after recovery: got %q, want %q", st.TxPort, r.names[0])
	}
	if ev := r.event(t); ev.Port != r.names[0] || !ev.Up {
		t.Errorf("event: got %+v, want port 0 up", ev)
	}
}

// TestLinkMonitorUpDelay: a port the monitor brings back waits out the up
// delay, like a link coming up.
func TestLinkMonitorUpDelay(t *testing.T) {
	r := newMonRig(t, "failover", 2, arpMon(target4), func(o *lagg.Options) { o.UpDelay = 350 * time.Millisecond })
	r.step(t)
	r.setPassing(0, false, 0)
	r.stepsUntil(t, 10, "port 0 monitor-down", func() bool { return !r.monitor(t, 0).Up })
	r.setPassing(0, true, 1)
	r.stepsUntil(t, 5, "port 0 monitor-up", func() bool { return r.monitor(t, 0).Up })
	if ps := portStatus(t, r.l, r.names[0]); ps.Active {
		t.Fatal("port 0 active as soon as the monitor is up, want after the up delay")
	}
	n := r.stepsUntil(t, 10, "port 0 active", func() bool { return portStatus(t, r.l, r.names[0]).Active })
	if n < 3 || n > 4 {
		t.Errorf("active %d intervals after monitor-up, want the 350 ms up delay", n)
	}
}

// TestLinkMonitorLoadBalance: loadbalance drops a silent port from its hash
// and keeps the others.
func TestLinkMonitorLoadBalance(t *testing.T) {
	r := newMonRig(t, "loadbalance", 3, arpMon(target4), nil)
	r.step(t)
	r.setPassing(1, false, 0)
	r.stepsUntil(t, 10, "port 1 monitor-down", func() bool { return !r.monitor(t, 1).Up })
	st := r.l.Status()
	for i, name := range r.names {
		dist := st.Port(name).Flags&lagg.PortDistributing != 0
		if dist != (i != 1) {
			t.Errorf("%s distributing: got %v, want %v", name, dist, i != 1)
		}
	}
	for i := range 64 {
		pkt := tcp4(uint16(40000+i), 443).packet()
		if got := r.l.SelectTxPort(pkt); got == r.names[1] || got == "" {
			t.Errorf("flow %d goes to %q, want port 0 or 2", i, got)
		}
		pkt.DecRef()
	}
}

// TestLinkMonitorLACP: an lacp port whose probes go unanswered leaves the
// aggregation (here fallback, with no partner): it neither collects nor
// distributes; the other port carries on.
func TestLinkMonitorLACP(t *testing.T) {
	r := newMonRig(t, "lacp", 2, arpMon(target4), func(o *lagg.Options) { o.LACP.Fallback = true })
	// Fallback begins once no partner may still come.
	r.stepsUntil(t, 600, "fallback on both ports", func() bool {
		st := r.l.Status()
		return st.Ports[0].Flags&st.Ports[1].Flags&lagg.PortCollecting != 0
	})
	r.setPassing(1, false, 0)
	r.stepsUntil(t, 10, "port 1 monitor-down", func() bool { return !r.monitor(t, 1).Up })
	if f := portStatus(t, r.l, r.names[1]).Flags; f&(lagg.PortCollecting|lagg.PortDistributing) != 0 {
		t.Errorf("port 1 after the loss: flags %v, want neither COLLECTING nor DISTRIBUTING", f)
	}
	if f := portStatus(t, r.l, r.names[0]).Flags; f&lagg.PortDistributing == 0 {
		t.Errorf("port 0 after the loss: flags %v, want DISTRIBUTING", f)
	}
}

// TestLinkMonitorRequire: with require all, one target that stops answering
// takes the port down; with any, it does not.
func TestLinkMonitorRequire(t *testing.T) {
	for _, req := range []lagg.MonitorRequire{lagg.RequireAll, lagg.RequireAny} {
		t.Run(string(req), func(t *testing.T) {
			mon := arpMon(target4, target4b)
			mon.Require = req
			r := newMonRig(t, "failover", 2, mon, nil)
			r.step(t)
			r.resp[1].answers(target4b, false)
			r.answering[1] = 1
			for range 6 {
				r.step(t)
			}
			m := r.monitor(t, 1)
			if want := req == lagg.RequireAny; m.Up != want {
				t.Fatalf("port 1 monitor up: got %v (%q), want %v", m.Up, m.Reason, want)
			}
			if req == lagg.RequireAll && m.Reason != "arp 10.0.0.2 unanswered 3×" {
				t.Errorf("reason: got %q, want %q", m.Reason, "arp 10.0.0.2 unanswered 3×")
			}
			if m := r.monitor(t, 0); !m.Up {
				t.Errorf("port 0: got down (%q), want up", m.Reason)
			}
		})
	}
}

// TestLinkMonitorNS: neighbour solicitation targets, from each port's own
// link-local.
func TestLinkMonitorNS(t *testing.T) {
	mon := lagg.MonitorOptions{NSTargets: []netip.Addr{target6}, Interval: monInterval, MissedMax: 2}
	r := newMonRig(t, "failover", 2, mon, nil)
	r.step(t)
	r.step(t)
	if m := r.monitor(t, 1); !m.Up || m.Replies == 0 {
		t.Fatalf("port 1: got %+v, want up with replies", m)
	}
	r.setPassing(1, false, 0)
	r.stepsUntil(t, 10, "port 1 monitor-down", func() bool { return !r.monitor(t, 1).Up })
	if m := r.monitor(t, 1); m.Reason != "ns fd00::1 unanswered 2×" {
		t.Errorf("reason: got %q, want %q", m.Reason, "ns fd00::1 unanswered 2×")
	}
	if m := r.monitor(t, 0); !m.Up {
		t.Errorf("port 0: got down (%q), want up", m.Reason)
	}
}

// TestLinkMonitorProbesDoNotPoison: probes carry sender IP 0.0.0.0, so a
// target learns no address of the lagg from them.
func TestLinkMonitorProbesDoNotPoison(t *testing.T) {
	r := newMonRig(t, "failover", 2, arpMon(target4), nil)
	var probes atomic.Int64
	r.wires[1].SetObserver(func(from *linkeptest.WireEnd, frame []byte) {
		if from != r.wires[1].A || header.Ethernet(frame).Type() != header.ARPProtocolNumber {
			return
		}
		probes.Add(1)
		a := header.ARP(frame[header.EthernetMinimumSize:])
		if src := tcpip.LinkAddress(header.Ethernet(frame).SourceAddress()); src != mac(1, 1) {
			t.Errorf("probe on port 1 from %v, want the port's own MAC %v", src, mac(1, 1))
		}
		if string(a.HardwareAddressSender()) != string(mac(1, 1)) || [4]byte(a.ProtocolAddressSender()) != [4]byte{} {
			t.Errorf("probe sender %x/%v, want %v/0.0.0.0", a.HardwareAddressSender(), a.ProtocolAddressSender(), mac(1, 1))
		}
	})
	for range 3 {
		r.step(t)
	}
	if probes.Load() == 0 {
		t.Fatal("no probe seen on port 1")
	}
	for _, resp := range r.resp {
		resp.mu.Lock()
		n := len(resp.cache)
		resp.mu.Unlock()
		if n != 0 {
			t.Errorf("a target cached %d addresses from probes, want none", n)
		}
	}
}

// arpReplyFrame is a target's reply to a probe from probeMAC, as a port
// delivers it (Ethernet header consumed).
func arpReplyFrame(t *testing.T, probeMAC tcpip.LinkAddress, from netip.Addr) *stack.PacketBuffer {
	t.Helper()
	b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: mac(2, 9), DstAddr: probeMAC, Type: header.ARPProtocolNumber})
	a := header.ARP(b[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPReply)
	copy(a.HardwareAddressSender(), mac(2, 9))
	f4 := from.As4()
	copy(a.ProtocolAddressSender(), f4[:])
	copy(a.HardwareAddressTarget(), probeMAC)
	return frameOf(t, b)
}

func frameOf(t testing.TB, b []byte) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	t.Cleanup(pkt.DecRef)
	pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	pkt.NetworkProtocolNumber = tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(b[12:]))
	return pkt
}

// TestLinkMonitorMisdirectedReply: a reply to port 1's probe that a confused
// switch delivers on port 0 proves nothing about either; on port 1 it
// counts. Neither reaches the stack.
func TestLinkMonitorMisdirectedReply(t *testing.T) {
	r := newMonRig(t, "failover", 2, arpMon(target4), nil)
	var d countingDispatcher
	r.l.Attach(&d)
	before0, before1 := r.monitor(t, 0).Replies, r.monitor(t, 1).Replies
	lagg.PortDispatcher(r.l, r.names[0]).DeliverNetworkPacket(header.ARPProtocolNumber, arpReplyFrame(t, mac(1, 1), target4))
	if got0, got1 := r.monitor(t, 0).Replies, r.monitor(t, 1).Replies; got0 != before0 || got1 != before1 {
		t.Errorf("a reply for port 1 on port 0 counted: replies %d, %d, want %d, %d", got0, got1, before0, before1)
	}
	lagg.PortDispatcher(r.l, r.names[1]).DeliverNetworkPacket(header.ARPProtocolNumber, arpReplyFrame(t, mac(1, 1), target4))
	if got := r.monitor(t, 1).Replies; got != before1+1 {
		t.Errorf("a reply for port 1 on port 1: replies %d, want %d", got, before1+1)
	}
	// From no target: not the monitor's, not the lagg's either.
	lagg.PortDispatcher(r.l, r.names[1]).DeliverNetworkPacket(header.ARPProtocolNumber, arpReplyFrame(t, mac(1, 1), target4b))
	if got := portStatus(t, r.l, r.names[1]).Counters.Drop(lagg.DropForeignMAC); got != 1 {
		t.Errorf("DropForeignMAC: got %d, want 1", got)
	}
	// Port 0 probes with the lagg's MAC (it took port 0's): the switch
	// sends replies to it wherever it last saw the lagg, so they count on
	// any port.
	before0 = r.monitor(t, 0).Replies
	lagg.PortDispatcher(r.l, r.names[1]).DeliverNetworkPacket(header.ARPProtocolNumber, arpReplyFrame(t, r.l.LinkAddress(), target4))
	if got := r.monitor(t, 0).Replies; got != before0+1 {
		t.Errorf("a reply to the lagg's MAC on port 1: port 0's replies %d, want %d", got, before0+1)
	}
	if n := d.network.Load(); n != 0 {
		t.Errorf("the stack got %d monitor frames, want 0", n)
	}
}

// TestLinkMonitorLACPRepliesAnyPort: under lacp the partner's bond picks the
// member a reply comes back on, so a reply to port 1's probe counts for
// port 1 wherever it arrives.
func TestLinkMonitorLACPRepliesAnyPort(t *testing.T) {
	r := newMonRig(t, "lacp", 2, arpMon(target4), nil)
	before := r.monitor(t, 1).Replies
	lagg.PortDispatcher(r.l, r.names[0]).DeliverNetworkPacket(header.ARPProtocolNumber, arpReplyFrame(t, mac(1, 1), target4))
	if got := r.monitor(t, 1).Replies; got != before+1 {
		t.Errorf("a reply for port 1 on port 0 under lacp: port 1's replies %d, want %d", got, before+1)
	}
}

// TestLinkMonitorRxAllocatesNothing: with the monitor on, the receive path
// allocates nothing for data frames, for frames to a port's own MAC it
// drops, nor for the monitor's replies.
func TestLinkMonitorRxAllocatesNothing(t *testing.T) {
	r := newMonRig(t, "loadbalance", 2, arpMon(target4), nil)
	var d countingDispatcher
	r.l.Attach(&d)
	shim := lagg.PortDispatcher(r.l, r.names[1])
	data := tcp4(40000, 443)
	data.dstMAC = r.l.LinkAddress()
	data6 := data
	data6.src, data6.dst = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	foreign := tcp4(40000, 443)
	foreign.dstMAC = mac(1, 1)
	for _, tc := range []struct {
		name  string
		pkt   *stack.PacketBuffer
		check func(runs uint64)
	}{
		{"data", inbound(t, data), func(runs uint64) {
			if got := d.network.Load(); got < runs {
				t.Errorf("data frames delivered: got %d, want >= %d", got, runs)
			}
		}},
		{"data v6 (looked at: port 0 probes with the lagg's MAC)", inbound(t, data6), func(runs uint64) {
			if got := d.network.Load(); got < 2*runs {
				t.Errorf("data frames delivered: got %d, want >= %d", got, 2*runs)
			}
		}},
		{"own MAC", inbound(t, foreign), func(runs uint64) {
			if got := portStatus(t, r.l, r.names[1]).Counters.Drop(lagg.DropForeignMAC); got < runs {
				t.Errorf("DropForeignMAC: got %d, want >= %d", got, runs)
			}
		}},
		{"reply", arpReplyFrame(t, mac(1, 1), target4), func(runs uint64) {
			if got := r.monitor(t, 1).Replies; got < runs {
				t.Errorf("replies: got %d, want >= %d", got, runs)
			}
		}},
	} {
		const runs = 500
		allocs := testing.AllocsPerRun(runs, func() { shim.DeliverNetworkPacket(tc.pkt.NetworkProtocolNumber, tc.pkt) })
		if allocs != 0 {
			t.Errorf("%s: got %v allocations per frame, want 0", tc.name, allocs)
		}
		tc.check(runs)
	}
}

// TestLinkMonitorApply: the monitor starts, changes and stops on a running
// lagg; stopping it brings a monitor-down port back.
func TestLinkMonitorApply(t *testing.T) {
	r := newMonRig(t, "failover", 2, lagg.MonitorOptions{}, nil)
	if st := r.l.Status(); st.Monitor != nil || st.Ports[0].Monitor != nil {
		t.Fatal("monitor status with no monitor configured")
	}
	r.answering = []int{1, 1}
	mon := arpMon(target4)
	if err := r.l.Update(func(c *lagg.Config) { c.Monitor = &mon }); err != nil {
		t.Fatal(err)
	}
	r.step(t)
	if st := r.l.Status(); st.Monitor == nil || st.Monitor.String() != "arp 10.0.0.1 interval 100ms missed 3 validate all require any" {
		t.Fatalf("monitor settings in status: got %v", st.Monitor)
	}
	r.setPassing(0, false, 0)
	r.stepsUntil(t, 10, "port 0 monitor-down", func() bool { return !r.monitor(t, 0).Up })
	if err := r.l.Update(func(c *lagg.Config) { c.Monitor = nil }); err != nil {
		t.Fatal(err)
	}
	st := r.l.Status()
	if ps := st.Port(r.names[0]); !ps.Active || ps.Monitor != nil || st.TxPort != r.names[0] {
		t.Errorf("after the monitor stopped: port 0 active %v monitor %v tx %q, want active, no monitor, tx port 0", ps.Active, ps.Monitor, st.TxPort)
	}
}

func TestLinkMonitorValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mon  lagg.MonitorOptions
		want string
	}{
		{"v6 as arp", lagg.MonitorOptions{ARPTargets: []netip.Addr{target6}}, "arp target fd00::1 is not a unicast arp address"},
		{"v4 as ns", lagg.MonitorOptions{NSTargets: []netip.Addr{target4}}, "ns target 10.0.0.1 is not a unicast ns address"},
		{"broadcast", lagg.MonitorOptions{ARPTargets: []netip.Addr{netip.MustParseAddr("255.255.255.255")}}, "not a unicast"},
		{"twice", lagg.MonitorOptions{ARPTargets: []netip.Addr{target4, target4}}, "given twice"},
		{"interval", lagg.MonitorOptions{ARPTargets: []netip.Addr{target4}, Interval: time.Millisecond}, "interval 1ms out of range 10ms..1m0s"},
		{"missed", lagg.MonitorOptions{ARPTargets: []netip.Addr{target4}, MissedMax: 256}, "missed_max 256 out of range 1..255"},
		{"validate", lagg.MonitorOptions{ARPTargets: []netip.Addr{target4}, Validate: "some"}, `validate "some" unknown`},
		{"require", lagg.MonitorOptions{ARPTargets: []netip.Addr{target4}, Require: "most"}, `require "most" unknown`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options("monv", "failover")
			o.Monitor = &tc.mon
			l, err := lagg.New(o)
			if err == nil {
				l.Close()
				t.Fatalf("got no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestLinkMonitorOffOwnMAC: with no monitor, frames to the lagg's MAC reach the
// stack and frames to a port's own MAC (which ports now deliver) are
// dropped and counted, without allocating.
func TestLinkMonitorOffOwnMAC(t *testing.T) {
	r := newMonRig(t, "loadbalance", 2, lagg.MonitorOptions{}, nil)
	var d countingDispatcher
	r.l.Attach(&d)
	shim := lagg.PortDispatcher(r.l, r.names[1])
	data := tcp4(40000, 443)
	data.dstMAC = r.l.LinkAddress()
	own := tcp4(40000, 443)
	own.dstMAC = mac(1, 1)
	const runs = 200
	for _, tc := range []struct {
		name      string
		f         flow
		delivered bool
	}{{"lagg MAC", data, true}, {"port's own MAC", own, false}} {
		pkt := inbound(t, tc.f)
		if !tc.delivered {
			pkt.PktType = tcpip.PacketOtherHost // as ports mark it (linkep.Port)
		}
		before, drops := d.network.Load(), portStatus(t, r.l, r.names[1]).Counters.Drop(lagg.DropForeignMAC)
		if allocs := testing.AllocsPerRun(runs, func() { shim.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt) }); allocs != 0 {
			t.Errorf("%s: got %v allocations per frame, want 0", tc.name, allocs)
		}
		gotDelivered := d.network.Load() - before
		gotDrops := portStatus(t, r.l, r.names[1]).Counters.Drop(lagg.DropForeignMAC) - drops
		want := uint64(runs + 1)
		if tc.delivered && (gotDelivered != want || gotDrops != 0) || !tc.delivered && (gotDelivered != 0 || gotDrops != want) {
			t.Errorf("%s: delivered %d, foreign-mac drops %d; want %d %s", tc.name, gotDelivered, gotDrops, want, map[bool]string{true: "delivered", false: "dropped"}[tc.delivered])
		}
	}
}

// TestLinkMonitorValidate: with validate active, a backup port needs no reply
// to its own probes while anything arrives on it; with validate all it
// does; with nothing arriving either way it goes down.
func TestLinkMonitorValidate(t *testing.T) {
	for _, tc := range []struct {
		validate lagg.MonitorValidate
		traffic  bool
		wantUp   bool
	}{
		{lagg.ValidateAll, true, false},
		{lagg.ValidateActive, true, true},
		{lagg.ValidateActive, false, false},
		{lagg.ValidateBackup, true, false}, // the backup port is validated
	} {
		t.Run(fmt.Sprintf("%s/traffic=%v", tc.validate, tc.traffic), func(t *testing.T) {
			mon := arpMon(target4)
			mon.Validate = tc.validate
			r := newMonRig(t, "failover", 2, mon, nil)
			r.step(t)
			r.resp[1].answers(target4, false)
			r.answering[1] = 0
			bcast := make([]byte, header.EthernetMinimumSize+header.ARPSize)
			header.Ethernet(bcast).Encode(&header.EthernetFields{SrcAddr: mac(2, 9), DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
			a := header.ARP(bcast[header.EthernetMinimumSize:])
			a.SetIPv4OverEthernet()
			a.SetOp(header.ARPRequest)
			shim := lagg.PortDispatcher(r.l, r.names[1])
			for range 6 {
				if tc.traffic {
					shim.DeliverNetworkPacket(header.ARPProtocolNumber, frameOf(t, bcast))
				}
				r.step(t)
			}
			if m := r.monitor(t, 1); m.Up != tc.wantUp {
				t.Errorf("backup port monitor up: got %v (%q), want %v", m.Up, m.Reason, tc.wantUp)
			}
			if m := r.monitor(t, 0); !m.Up {
				t.Errorf("transmitting port: got down (%q), want up", m.Reason)
			}
		})
	}
}

// BenchmarkRxAcceptMonitor is BenchmarkRxAccept's frame addressed to the
// lagg's MAC, with the link monitor off and on: the receive path's cost of
// the own-MAC check and of the monitor's hook.
func BenchmarkRxAcceptMonitor(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("monitor=%v", on), func(b *testing.B) {
			l, sinks := newSinkLagg(b, "loadbalance", 4)
			if on {
				mon := lagg.MonitorOptions{ARPTargets: []netip.Addr{target4}, Interval: time.Minute, MissedMax: 3}
				if err := l.Update(func(c *lagg.Config) { c.Monitor = &mon }); err != nil {
					b.Fatal(err)
				}
			}
			var d countingDispatcher
			l.Attach(&d)
			shim := lagg.PortDispatcher(l, sinks[2].Name())
			f := tcp4(40000, 443)
			f.dstMAC = l.LinkAddress()
			pkt := inbound(b, f)
			b.ReportAllocs()
			for b.Loop() {
				shim.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
			}
			if d.network.Load() == 0 {
				b.Fatal("nothing delivered")
			}
		})
	}
}
