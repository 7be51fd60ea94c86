package lagg

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// VLAN IDs a VLAN interface may take: 0 is a priority tag and 4095 is
// reserved (IEEE 802.1Q).
const (
	MinVID = 1
	MaxVID = 4094
)

// vlanTagSize is an 802.1Q tag: TPID (in the Ethernet header's type field,
// so two more bytes of TCI) plus the inner EtherType.
const vlanTagSize = 4

// VLAN is an 802.1Q VLAN interface on top of a lagg (NetBSD's vlan(4) with
// vlanif laggN): a stack.LinkEndpoint of its own, so the stack gives it its
// own NIC, addresses and routes. It shares the lagg's MAC and MTU (the tag
// does not eat into the MTU: Linux AF_PACKET and veth take a tagged frame
// of MTU+4, as NetBSD's ETHERCAP_VLAN_MTU allows). Received frames tagged
// with its VID are stripped of the tag and handed to its dispatcher;
// frames it sends get the tag in the Ethernet header it pushes and leave
// through the lagg's transmit path, so the protocol picks the port.
//
// Checksum offload and GSO are not offered: a port fills in csum_start
// for an untagged Ethernet header, so the stack computes checksums and
// segments itself.
//
// Create one with Lagg.AddVLAN; the stack's RemoveNIC (Close) or
// Lagg.RemoveVLAN takes it off the lagg.
type VLAN struct {
	l   *Lagg
	vid uint16

	disp   atomic.Pointer[vlanDispatcher] // nil: not attached
	ctr    counters
	closed atomic.Bool
}

type vlanDispatcher struct{ d stack.NetworkDispatcher }

var _ stack.LinkEndpoint = (*VLAN)(nil)

// vlanTable maps a VID to its VLAN; published with the snapshot and never
// changed once published (AddVLAN and RemoveVLAN build a new one), so the
// receive path reads it with no lock.
type vlanTable struct {
	byVID map[uint16]*VLAN
}

func (t *vlanTable) lookup(vid uint16) *VLAN {
	if t == nil {
		return nil
	}
	return t.byVID[vid]
}

// AddVLAN creates the VLAN interface with ID vid on the lagg. Hand it to
// stack.CreateNIC; frames tagged vid go to it from now on (they are
// counted as DropVLAN while no stack is attached to it).
func (l *Lagg) AddVLAN(vid uint16) (*VLAN, error) {
	if vid < MinVID || vid > MaxVID {
		return nil, fmt.Errorf("lagg %s: VLAN ID %d is out of range %d..%d", l.name, vid, MinVID, MaxVID)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("lagg %s is closed", l.name)
	}
	if l.vlans.lookup(vid) != nil {
		return nil, fmt.Errorf("lagg %s: VLAN %d exists already", l.name, vid)
	}
	v := &VLAN{l: l, vid: vid}
	t := &vlanTable{byVID: map[uint16]*VLAN{vid: v}}
	if l.vlans != nil {
		maps.Copy(t.byVID, l.vlans.byVID)
	}
	l.setVLANsLocked(t)
	return v, nil
}

// RemoveVLAN takes VLAN vid off the lagg: its frames are dropped as
// DropVLAN again. The VLAN's NIC should be removed from the stack first.
func (l *Lagg) RemoveVLAN(vid uint16) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := l.vlans.lookup(vid)
	if v == nil {
		return fmt.Errorf("lagg %s: no VLAN %d", l.name, vid)
	}
	l.removeVLANLocked(v)
	return nil
}

// VLANs returns the IDs of the lagg's VLAN interfaces, in order.
func (l *Lagg) VLANs() []uint16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.vlans == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(l.vlans.byVID))
}

// +checklocks:l.mu
func (l *Lagg) removeVLANLocked(v *VLAN) {
	if l.vlans.lookup(v.vid) != v {
		return
	}
	t := &vlanTable{byVID: maps.Clone(l.vlans.byVID)}
	delete(t.byVID, v.vid)
	if len(t.byVID) == 0 {
		t = nil
	}
	l.setVLANsLocked(t)
}

// setVLANsLocked publishes t in a copy of the current snapshot; the
// distribution is unchanged, so the protocol is not asked again.
//
// +checklocks:l.mu
func (l *Lagg) setVLANsLocked(t *vlanTable) {
	l.vlans = t
	s := *l.snap.Load()
	s.vlans = t
	l.snap.Store(&s)
}

// vlanRx takes a frame tagged with 802.1Q TPID whose tag is still in the
// data (linkep's contract): the VLAN of its VID gets it, tag stripped, or
// it is counted as DropVLAN. It neither locks nor allocates.
func (p *port) vlanRx(s *snapshot, pkt *stack.PacketBuffer) {
	tag, ok := pkt.Data().PullUp(vlanTagSize)
	if !ok {
		p.ctr.drop(DropVLAN, 1)
		return
	}
	v := s.vlans.lookup(binary.BigEndian.Uint16(tag) & 0x0fff)
	if v == nil {
		p.ctr.drop(DropVLAN, 1)
		return
	}
	inner := tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(tag[2:]))
	vd := v.disp.Load()
	// A stacked tag (QinQ inside) or a slow-protocol frame has no place
	// on a VLAN interface.
	if vd == nil || isVLANTPID(inner) || inner == EtherTypeSlowProtocols {
		p.ctr.drop(DropVLAN, 1)
		return
	}
	// The link header keeps the outer 14 bytes. The tag is consumed as the
	// one header gVisor places between the data and nothing else on a
	// received frame, the virtio-net header (ports deliver none): gVisor
	// finds a header's payload by summing the header lengths
	// (stack.PayloadSince, used by ICMP echo replies), so the 4 bytes must
	// belong to a header, and the link header cannot be consumed twice.
	// (Packet sockets on a VLAN's NIC would see the frame 4 bytes off; ulagg
	// captures on the lagg instead.)
	if len(pkt.VirtioNetHeader().Slice()) != 0 {
		p.ctr.drop(DropVLAN, 1)
		return
	}
	pkt.VirtioNetHeader().Consume(vlanTagSize)
	pkt.NetworkProtocolNumber = inner
	if inner == header.IPv4ProtocolNumber || inner == header.IPv6ProtocolNumber {
		if !p.l.verifyRx(inner, pkt) {
			p.ctr.drop(DropChecksum, 1)
			return
		}
	}
	noteRx(s, p)
	size := pkt.Size()
	p.ctr.rx(size)
	v.ctr.rx(size)
	vd.d.DeliverNetworkPacket(inner, pkt)
}

// VID returns the VLAN's ID.
func (v *VLAN) VID() uint16 { return v.vid }

// Lagg returns the lagg the VLAN is on.
func (v *VLAN) Lagg() *Lagg { return v.l }

// Counters returns the frames and bytes the VLAN received and sent.
func (v *VLAN) Counters() Counters { return v.ctr.snapshot() }

// WritePackets implements stack.LinkEndpoint: frames, tagged by AddHeader,
// go through the lagg's transmitter. The caller keeps its references.
func (v *VLAN) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	s := v.l.snap.Load()
	if v.closed.Load() || s.vlans.lookup(v.vid) != v {
		v.ctr.drop(DropNoPort, pkts.Len())
		return 0, &tcpip.ErrClosedForSend{}
	}
	if !s.dist.up {
		v.l.ctr.drop(DropNoPort, pkts.Len())
		return 0, &tcpip.ErrNoBufferSpace{}
	}
	n, err := s.dist.tx.transmit(s, pkts)
	if n > 0 {
		bytes := 0
		for _, pkt := range pkts.AsSlice()[:n] {
			bytes += pkt.Size()
		}
		v.ctr.tx(n, bytes)
	}
	return n, err
}

// MTU implements stack.LinkEndpoint: the lagg's.
func (v *VLAN) MTU() uint32 { return v.l.MTU() }

// SetMTU implements stack.LinkEndpoint. A VLAN's MTU follows its lagg's;
// set that one.
func (v *VLAN) SetMTU(uint32) {}

// MaxHeaderLength implements stack.LinkEndpoint: the lagg's plus the tag.
func (v *VLAN) MaxHeaderLength() uint16 { return v.l.MaxHeaderLength() + vlanTagSize }

// LinkAddress implements stack.LinkEndpoint: the lagg's MAC.
func (v *VLAN) LinkAddress() tcpip.LinkAddress { return v.l.LinkAddress() }

// SetLinkAddress implements stack.LinkEndpoint. A VLAN uses its lagg's MAC.
func (v *VLAN) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint: the lagg's, without TX
// checksum offload (see VLAN).
func (v *VLAN) Capabilities() stack.LinkEndpointCapabilities {
	return v.l.Capabilities() &^ (stack.CapabilityTXChecksumOffload | stack.CapabilityLoopback)
}

// Attach implements stack.LinkEndpoint.
func (v *VLAN) Attach(d stack.NetworkDispatcher) {
	if d == nil || v.closed.Load() {
		v.disp.Store(nil)
		return
	}
	v.disp.Store(&vlanDispatcher{d})
}

// IsAttached implements stack.LinkEndpoint.
func (v *VLAN) IsAttached() bool { return v.disp.Load() != nil }

// Wait implements stack.LinkEndpoint: a VLAN has no goroutine.
func (*VLAN) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (*VLAN) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint: an Ethernet header with the
// 802.1Q tag (priority 0).
func (v *VLAN) AddHeader(pkt *stack.PacketBuffer) {
	b := pkt.LinkHeader().Push(header.EthernetMinimumSize + vlanTagSize)
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    EtherTypeVLAN,
	})
	binary.BigEndian.PutUint16(b[header.EthernetMinimumSize:], v.vid)
	binary.BigEndian.PutUint16(b[header.EthernetMinimumSize+2:], uint16(pkt.NetworkProtocolNumber))
}

// ParseHeader implements stack.LinkEndpoint: it consumes the tagged
// Ethernet header of a frame injected with its header.
func (v *VLAN) ParseHeader(pkt *stack.PacketBuffer) bool {
	b, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize + vlanTagSize)
	if !ok || header.Ethernet(b).Type() != EtherTypeVLAN || binary.BigEndian.Uint16(b[header.EthernetMinimumSize:])&0x0fff != v.vid {
		return false
	}
	pkt.NetworkProtocolNumber = tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(b[header.EthernetMinimumSize+2:]))
	return true
}

// Close implements stack.LinkEndpoint: the VLAN leaves its lagg. It is
// idempotent.
func (v *VLAN) Close() {
	if v.closed.Swap(true) {
		return
	}
	v.disp.Store(nil)
	v.l.mu.Lock()
	defer v.l.mu.Unlock()
	v.l.removeVLANLocked(v)
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (*VLAN) SetOnCloseAction(func()) {}
