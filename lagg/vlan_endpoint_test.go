package lagg_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	ustack "github.com/ulagg/ulagg/stack"
)

// addVLANNIC puts VLAN vid of n's lagg on n's stack as NIC nic with addr.
func addVLANNIC(t *testing.T, n *node, nic tcpip.NICID, vid uint16, addr string) *lagg.VLAN {
	t.Helper()
	v, err := n.l.AddVLAN(vid)
	if err != nil {
		t.Fatal(err)
	}
	if err := ustack.AddInterface(n.s, nic, fmt.Sprintf("vlan%d", vid), v, []netip.Prefix{netip.MustParsePrefix(addr)}); err != nil {
		v.Close()
		t.Fatal(err)
	}
	return v
}

// TestVLANTwoStacks: two gVisor stacks over a loadbalance lagg pair of
// two in-memory wires. VLAN 100 on both sides carries a TCP echo; A's VLAN
// 200 faces B's VLAN 300 with an address of the same subnet and reaches
// nothing; the untagged NICs still talk; removing VLAN 100 cuts it off.
func TestVLANTwoStacks(t *testing.T) {
	p := newPair(t, "loadbalance", 2, nil)
	va := addVLANNIC(t, p.a, 2, 100, "10.100.0.1/24")
	vb := addVLANNIC(t, p.b, 2, 100, "10.100.0.2/24")
	addVLANNIC(t, p.a, 3, 200, "10.200.0.1/24")
	addVLANNIC(t, p.b, 3, 300, "10.200.0.2/24")

	if got, want := va.MTU(), p.a.l.MTU(); got != want {
		t.Errorf("VLAN MTU: got %d, want the lagg's %d", got, want)
	}
	if got, want := va.LinkAddress(), p.a.l.LinkAddress(); got != want {
		t.Errorf("VLAN MAC: got %v, want the lagg's %v", got, want)
	}

	msg := bytes.Repeat([]byte("vlan100"), 3000)
	b100 := netip.MustParseAddrPort("10.100.0.2:7")
	testkit.ServeEcho(t, testkit.ListenTCP(t, p.b.s, b100))
	testkit.CheckEcho(t, testkit.GonetDialer(p.a.s, b100), msg)
	if err := testkit.Ping(p.a.s, b100.Addr(), 5*time.Second); err != nil {
		t.Errorf("ping over VLAN 100: %v", err)
	}
	// IPv6 too: neighbour discovery and echo over the tag.
	for i, n := range []*node{p.a, p.b} {
		if err := ustack.AddAddress(n.s, 2, netip.MustParsePrefix(fmt.Sprintf("fd01::%d/64", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := testkit.Ping(p.a.s, netip.MustParseAddr("fd01::2"), 5*time.Second); err != nil {
		t.Errorf("ping6 over VLAN 100: %v", err)
	}
	// Untagged traffic keeps working on the lagg itself.
	testkit.ServeEcho(t, p.b.listen(t, 7))
	testkit.CheckEcho(t, p.a.dialer(p.b, 7), []byte("untagged"))

	if got := vb.Counters(); got.RxFrames == 0 || got.TxFrames == 0 {
		t.Errorf("B's VLAN 100 counters: got %+v, want frames both ways", got)
	}
	if got := va.Counters(); got.RxBytes < uint64(len(msg)) {
		t.Errorf("A's VLAN 100 rx bytes: got %d, want at least the %d echoed", got.RxBytes, len(msg))
	}

	// VLAN 200 is isolated: its frames reach B tagged 200, which B has not.
	var drops0 uint64
	for i := range 2 {
		drops0 += portStatus(t, p.b.l, p.portB(i)).Counters.Drops["vlan"]
	}
	if err := testkit.Ping(p.a.s, netip.MustParseAddr("10.200.0.2"), 600*time.Millisecond); err == nil {
		t.Errorf("ping from A's VLAN 200 to B's VLAN 300 got an answer, want none")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if c, err := testkit.GonetDialer(p.a.s, netip.MustParseAddrPort("10.200.0.2:7"))(ctx); err == nil {
		c.Close()
		t.Errorf("TCP from VLAN 200 to VLAN 300 connected, want no answer")
	}
	var drops uint64
	for i := range 2 {
		drops += portStatus(t, p.b.l, p.portB(i)).Counters.Drops["vlan"]
	}
	if drops == drops0 {
		t.Errorf("B's vlan drops: still %d after A's VLAN 200 sent, want them counted", drops)
	}

	// Gone from B, VLAN 100 carries nothing more.
	if err := p.b.s.RemoveNIC(2); err != nil {
		t.Fatal(err)
	}
	if vids := p.b.l.VLANs(); len(vids) != 1 || vids[0] != 300 {
		t.Errorf("B's VLANs after removing VLAN 100's NIC: got %v, want [300]", vids)
	}
	if err := testkit.Ping(p.a.s, b100.Addr(), 600*time.Millisecond); err == nil {
		t.Errorf("ping over VLAN 100 after B removed it got an answer")
	}
}

// TestAddVLANErrors: out-of-range and duplicate VIDs are refused.
func TestAddVLANErrors(t *testing.T) {
	l, _ := newSinkLagg(t, "failover", 1)
	for _, vid := range []uint16{0, 4095, 5000} {
		if v, err := l.AddVLAN(vid); err == nil {
			v.Close()
			t.Errorf("AddVLAN(%d): got no error", vid)
		}
	}
	v, err := l.AddVLAN(7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddVLAN(7); err == nil {
		t.Errorf("AddVLAN(7) twice: got no error")
	}
	if err := l.RemoveVLAN(8); err == nil {
		t.Errorf("RemoveVLAN(8) of no such VLAN: got no error")
	}
	v.Close()
	v.Close() // idempotent
	if got := l.VLANs(); len(got) != 0 {
		t.Errorf("VLANs after Close: got %v, want none", got)
	}
	if _, err := l.AddVLAN(7); err != nil {
		t.Errorf("AddVLAN(7) after the first closed: %v", err)
	}
}

// taggedInbound returns n copies of f's frame tagged with vid as a port
// delivers them (Ethernet header consumed, TPID as the protocol).
func taggedInbound(tb testing.TB, f flow, vid uint16, n int) []*stack.PacketBuffer {
	tb.Helper()
	frame := tag(f.frame(), 0x8100, vid)
	out := make([]*stack.PacketBuffer, n)
	for i := range out {
		out[i] = rxPacket(tb, frame, true)
	}
	return out
}

// vlanOutbound returns an IPv4 TCP packet as the stack hands it to VLAN
// v: network and transport headers marked, Ethernet header and tag
// pushed by v.AddHeader.
func vlanOutbound(tb testing.TB, v *lagg.VLAN, f flow) *stack.PacketBuffer {
	tb.Helper()
	frame := f.frame()
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: int(v.MaxHeaderLength()),
		Payload:            buffer.MakeWithData(frame[header.EthernetMinimumSize:]),
	})
	tb.Cleanup(pkt.DecRef)
	pkt.NetworkHeader().Consume(header.IPv4MinimumSize)
	pkt.TransportHeader().Consume(header.TCPMinimumSize)
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.EgressRoute.LocalLinkAddress = f.srcMAC
	pkt.EgressRoute.RemoteLinkAddress = f.dstMAC
	v.AddHeader(pkt)
	return pkt
}

// TestVLANDataPathAllocatesNothing: receiving a frame of a configured VID
// (demux, strip, verify, deliver) and sending through a VLAN (tag pushed
// by AddHeader, lagg transmitter) allocate nothing; the pushed header is
// the 802.1Q one; unknown VIDs still count as DropVLAN.
func TestVLANDataPathAllocatesNothing(t *testing.T) {
	l, sinks := newSinkLagg(t, "loadbalance", 4)
	var untagged, d countingDispatcher
	l.Attach(&untagged)
	v, err := l.AddVLAN(100)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	v.Attach(&d)
	shim := lagg.PortDispatcher(l, sinks[1].Name())

	const runs = 500
	pkts := taggedInbound(t, tcp4(40000, 443), 100, runs+1)
	i := 0
	allocs := testing.AllocsPerRun(runs, func() {
		pkt := pkts[i]
		i++
		shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
	})
	if allocs != 0 {
		t.Errorf("VLAN receive: %v allocations per frame, want 0", allocs)
	}
	if got := d.network.Load(); got != runs+1 {
		t.Errorf("delivered to VLAN 100: got %d, want %d", got, runs+1)
	}
	if got := untagged.network.Load(); got != 0 {
		t.Errorf("tagged frames delivered to the untagged stack: %d", got)
	}
	if got := pkts[0].NetworkProtocolNumber; got != header.IPv4ProtocolNumber {
		t.Errorf("protocol after strip: got %#x, want IPv4", got)
	}
	if got, _ := pkts[0].Data().PullUp(header.IPv4MinimumSize); len(got) < header.IPv4MinimumSize || header.IPv4(got).SourceAddress() != tcpip.AddrFrom4([4]byte{10, 0, 0, 1}) {
		t.Errorf("data after strip: got % x, want the IPv4 header", got)
	}
	other := taggedInbound(t, tcp4(40000, 443), 101, 1)[0]
	shim.DeliverNetworkPacket(other.NetworkProtocolNumber, other)
	if got := portStatus(t, l, sinks[1].Name()).Counters.Drops["vlan"]; got != 1 {
		t.Errorf("VID 101 with only VLAN 100: vlan drops got %d, want 1", got)
	}
	if got := v.Counters().RxFrames; got != runs+1 {
		t.Errorf("VLAN rx frames: got %d, want %d", got, runs+1)
	}

	var lists []stack.PacketBufferList
	for _, f := range hotFlows(false, 16) {
		var pl stack.PacketBufferList
		pl.PushBack(vlanOutbound(t, v, f))
		lists = append(lists, pl)
	}
	eth := lists[0].AsSlice()[0].LinkHeader().Slice()
	if want := []byte{0x81, 0x00, 0x00, 100, 0x08, 0x00}; len(eth) != 18 || !bytes.Equal(eth[12:18], want) {
		t.Errorf("pushed link header: got % x, want type and tag % x", eth, want)
	}
	var before uint64
	for _, s := range sinks {
		before += s.frames.Load()
	}
	allocs = testing.AllocsPerRun(200, func() {
		for _, pl := range lists {
			if _, err := v.WritePackets(pl); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("VLAN transmit: %v allocations per 16 frames, want 0", allocs)
	}
	var after uint64
	for _, s := range sinks {
		after += s.frames.Load()
	}
	if got, want := after-before, uint64(201*16); got != want {
		t.Errorf("frames at the ports: got %d, want %d", got, want)
	}
}

// TestVLANHashSeesInnerHeaders: a frame a VLAN sends is placed by its
// inner IP and ports like the same flow untagged would be spread: 64 flows
// use more than one of 4 ports, and one flow always the same port.
func TestVLANHashSeesInnerHeaders(t *testing.T) {
	l, _ := newSinkLagg(t, "loadbalance", 4)
	v, err := l.AddVLAN(100)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	used := map[string]bool{}
	for _, f := range hotFlows(false, 64) {
		pkt := vlanOutbound(t, v, f)
		p := l.SelectTxPort(pkt)
		used[p] = true
		f2 := f
		pkt2 := vlanOutbound(t, v, f2)
		binary.BigEndian.PutUint16(pkt2.NetworkHeader().Slice()[2:], 1400) // another length, same flow
		if p2 := l.SelectTxPort(pkt2); p2 != p {
			t.Fatalf("one flow on two ports: %s and %s (the hash read the IP header as a tag)", p, p2)
		}
	}
	if len(used) < 2 {
		t.Errorf("64 VLAN flows used ports %v, want them spread", used)
	}
}

// BenchmarkVLANRx is a tagged frame's receive path: demux by VID, strip,
// checksum already vouched for, deliver.
func BenchmarkVLANRx(b *testing.B) {
	l, sinks := newSinkLagg(b, "loadbalance", 4)
	var untagged, d countingDispatcher
	l.Attach(&untagged)
	v, err := l.AddVLAN(100)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	v.Attach(&d)
	shim := lagg.PortDispatcher(l, sinks[2].Name())
	const batch = 1024
	frame := tag(tcp4(40000, 443).frame(), 0x8100, 100)
	pkts := make([]*stack.PacketBuffer, batch)
	fill := func() {
		for i := range pkts {
			if pkts[i] != nil {
				pkts[i].DecRef()
			}
			pkts[i] = stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
			pkts[i].LinkHeader().Consume(header.EthernetMinimumSize)
			pkts[i].RXChecksumValidated = true
		}
	}
	b.Cleanup(func() {
		for _, p := range pkts {
			p.DecRef()
		}
	})
	fill()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 && i > 0 {
			b.StopTimer()
			fill()
			b.StartTimer()
		}
		shim.DeliverNetworkPacket(lagg.EtherTypeVLAN, pkts[i%batch])
	}
	if d.network.Load() == 0 {
		b.Fatal("nothing delivered")
	}
}

// BenchmarkVLANTx is WritePackets of one tagged frame through a VLAN on a
// loadbalance lagg over 4 ports.
func BenchmarkVLANTx(b *testing.B) {
	l, _ := newSinkLagg(b, "loadbalance", 4)
	v, err := l.AddVLAN(100)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	var lists []stack.PacketBufferList
	for _, f := range hotFlows(false, 64) {
		var pl stack.PacketBufferList
		pl.PushBack(vlanOutbound(b, v, f))
		lists = append(lists, pl)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := v.WritePackets(lists[i&63]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
