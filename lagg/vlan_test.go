package lagg_test

import (
	"encoding/binary"
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
	"github.com/ulagg/ulagg/lagg/lacp"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// rxPacket returns frame as a port delivers it: Ethernet header consumed,
// the EtherType (a VLAN TPID for a tagged frame) as the protocol, and
// RXChecksumValidated as the port's word. It is released when the test
// ends.
func rxPacket(tb testing.TB, frame []byte, validated bool) *stack.PacketBuffer {
	tb.Helper()
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	tb.Cleanup(pkt.DecRef)
	if !linkep.ParseEthernetHeader(pkt) {
		tb.Fatal("frame shorter than an Ethernet header")
	}
	pkt.RXChecksumValidated = validated
	return pkt
}

// tag inserts an 802.1Q-style tag (tpid, vid) after the MAC addresses.
func tag(frame []byte, tpid, vid uint16) []byte {
	out := make([]byte, 0, len(frame)+4)
	out = append(out, frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, tpid)
	out = binary.BigEndian.AppendUint16(out, vid)
	return append(out, frame[12:]...)
}

// arpRequestFrame asks who has target, from sender (MAC src).
func arpRequestFrame(src tcpip.LinkAddress, sender, target [4]byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: src, DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(b[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), src)
	copy(a.ProtocolAddressSender(), sender[:])
	copy(a.ProtocolAddressTarget(), target[:])
	return b
}

// pingFrame is an ICMPv4 echo request from src to dst.
func pingFrame(dstMAC, srcMAC tcpip.LinkAddress, src, dst [4]byte, id, seq uint16) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+header.ICMPv4MinimumSize+32)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: srcMAC, DstAddr: dstMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src), DstAddr: tcpip.AddrFrom4(dst)})
	ip.SetChecksum(^ip.CalculateChecksum())
	icmp := header.ICMPv4(ip.Payload())
	icmp.SetType(header.ICMPv4Echo)
	icmp.SetIdent(id)
	icmp.SetSequence(seq)
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	return b
}

// TestVLANTaggedFramesDropped: a frame whose EtherType is a VLAN TPID
// (802.1Q, 802.1ad, the old 0x9100) never reaches the untagged stack, not
// even as a packet-socket copy; it is counted as DropVLAN on its port,
// without allocating. The same frames untagged are delivered.
func TestVLANTaggedFramesDropped(t *testing.T) {
	l, sinks := newSinkLagg(t, "loadbalance", 2)
	var d countingDispatcher
	l.Attach(&d)
	name := sinks[1].Name()
	shim := lagg.PortDispatcher(l, name)
	src := tcpip.LinkAddress("\x02\x00\x00\x00\x09\x01")
	arp := arpRequestFrame(src, [4]byte{10, 0, 0, 9}, [4]byte{10, 0, 0, 1})
	ping := pingFrame(l.LinkAddress(), src, [4]byte{10, 0, 0, 9}, [4]byte{10, 0, 0, 1}, 1, 1)
	lacpdu := lacpduFrame(src)
	tagged := []struct {
		name  string
		frame []byte
	}{
		{"802.1Q ARP VID 200", tag(arp, 0x8100, 200)},
		{"802.1Q ping VID 200", tag(ping, 0x8100, 200)},
		{"802.1ad ARP VID 200", tag(arp, 0x88a8, 200)},
		{"0x9100 ping VID 7", tag(ping, 0x9100, 7)},
		{"802.1p priority tag VID 0", tag(ping, 0x8100, 0x6000)},
		{"802.1Q LACPDU VID 100", tag(lacpdu, 0x8100, 100)},
	}
	for _, tc := range tagged {
		pkt := rxPacket(t, tc.frame, false)
		shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
		shim.DeliverLinkPacket(pkt.NetworkProtocolNumber, pkt)
	}
	st := portStatus(t, l, name)
	if got := d.network.Load() + d.link.Load(); got != 0 {
		t.Errorf("tagged frames handed to the stack: got %d, want 0", got)
	}
	if got, want := st.Counters.Drops["vlan"], uint64(len(tagged)); got != want {
		t.Errorf("vlan drops: got %d, want %d (drops %v)", got, want, st.Counters.Drops)
	}
	if st.Counters.RxFrames != 0 {
		t.Errorf("rx frames: got %d, want 0", st.Counters.RxFrames)
	}
	for _, f := range [][]byte{arp, ping} {
		pkt := rxPacket(t, f, false)
		shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
	}
	if got := d.network.Load(); got != 2 {
		t.Errorf("untagged ARP and ping delivered: got %d, want 2", got)
	}
	pkt := rxPacket(t, tag(ping, 0x8100, 200), false)
	if allocs := testing.AllocsPerRun(1000, func() { shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt) }); allocs != 0 {
		t.Errorf("dropping a tagged frame: %v allocations, want 0", allocs)
	}
}

// lacpduFrame is a well-formed LACPDU from src.
func lacpduFrame(src tcpip.LinkAddress) []byte {
	var mac [6]byte
	copy(mac[:], src)
	pdu := lacp.LACPDU{Version: 1,
		Actor:   lacp.Info{SystemPriority: 32768, System: mac, Key: 1, PortPriority: 32768, Port: 1, State: lacp.StateActivity | lacp.StateAggregation},
		Partner: lacp.Info{}, CollectorMaxDelay: 0}
	return pdu.AppendFrame(nil, mac)
}

// taggingPort is a wire end that puts an 802.1Q tag (VID 100) on every
// slow-protocol frame it sends while tagging is on: its partner receives
// tagged LACPDUs.
type taggingPort struct {
	keptPort
	tagging *atomic.Bool
}

func (p taggingPort) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	if !p.tagging.Load() {
		return p.keptPort.WritePackets(pkts)
	}
	n := 0
	for _, pkt := range pkts.AsSlice() {
		v := pkt.ToView()
		frame := v.AsSlice()
		if len(frame) >= header.EthernetMinimumSize && header.Ethernet(frame).Type() == lagg.EtherTypeSlowProtocols {
			frame = tag(frame, 0x8100, 100)
		}
		out := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
		v.Release()
		var l stack.PacketBufferList
		l.PushBack(out)
		k, err := p.keptPort.WritePackets(l)
		out.DecRef()
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestVLANTaggedLACPDUsIgnored (fake clock): an LACP partner whose LACPDUs
// arrive tagged with VID 100 is no partner: they never reach the LACP
// engine, the port never goes DISTRIBUTING, and they are counted as drops.
// Once the partner's frames arrive untagged the ports aggregate, so
// nothing else was in the way.
func TestVLANTaggedLACPDUsIgnored(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := testkit.NewFakeClock(start)
	id := nextID()
	var tagging atomic.Bool
	tagging.Store(true)
	var wires []*linkeptest.Wire
	var aPorts, bPorts []linkep.Port
	for i := range 2 {
		w := newWire(id, i)
		wires = append(wires, w)
		aPorts = append(aPorts, w.A)
		bPorts = append(bPorts, taggingPort{keptPort{w.B}, &tagging})
	}
	p := newPairWith(t, id, "lacp", wires, aPorts, bPorts, func(_ int, o *lagg.Options) {
		o.Clock = clk
		o.AnnounceCount = 1 // no repetition timer: idle counts the protocols' timers only
		o.LACP.FastRate = true
	})
	// both=false: B's tagged frames are never handled by A's engine, so
	// settle only waits for the timers.
	f := &fakeLACP{pair: p, clk: clk, start: start, timers: 2, cut: make([]bool, 2), lost: make([][2]uint64, 2)}
	f.settle(t)
	for range 50 { // 5 s: a fast-rate partner would have aggregated within 1 s
		f.step(t)
		if n := distributing(p.a.l); n != 0 {
			t.Fatalf("at %v: %d ports of A distributing on tagged LACPDUs", f.elapsed(), n)
		}
	}
	var drops, rx uint64
	for i := range 2 {
		ps := portStatus(t, p.a.l, p.portA(i))
		// Not collecting, A's ports drop every data frame as
		// inactive-port before looking at its tag.
		drops += ps.Counters.Drops["vlan"] + ps.Counters.Drops["inactive-port"]
		if ps.LACP != nil {
			rx += ps.LACP.Counters.LACPDUsRx + ps.LACP.Counters.MalformedRx + ps.LACP.Counters.UnknownRx
		}
	}
	if drops == 0 {
		t.Errorf("A's drops: got 0, want the tagged LACPDUs counted")
	}
	if rx != 0 {
		t.Errorf("A's LACP engine handled %d slow-protocol frames, want 0", rx)
	}
	t.Logf("measure: in-process lacp, partner's LACPDUs tagged VID 100 for 5 s (fake clock): A distributing 0/2, %d tagged LACPDUs dropped (inactive-port: a port that is not collecting drops them before the vlan check), 0 reached the LACP engine", drops)
	tagging.Store(false)
	f.advanceUntil(t, 5*time.Second, "both sides distributing once the tags are gone", func() bool {
		return distributing(p.a.l) == 2 && distributing(p.b.l) == 2
	})
}
