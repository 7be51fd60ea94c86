package lagg

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// VLAN tag protocol identifiers. Ports deliver a received frame with its
// outer tag still in the frame (linkep's contract), so a tagged frame
// reaches the lagg with one of these as its EtherType.
const (
	EtherTypeVLAN   tcpip.NetworkProtocolNumber = 0x8100 // IEEE 802.1Q C-tag
	EtherTypeQinQ   tcpip.NetworkProtocolNumber = 0x88a8 // IEEE 802.1ad S-tag
	EtherTypeQinQv1 tcpip.NetworkProtocolNumber = 0x9100 // pre-802.1ad double tagging
)

// isVLANTPID reports whether an EtherType is a VLAN tag's TPID.
func isVLANTPID(proto tcpip.NetworkProtocolNumber) bool {
	return proto == EtherTypeVLAN || proto == EtherTypeQinQ || proto == EtherTypeQinQv1
}

// vlanInput takes a tagged frame that port p accepted (it may receive, the
// lagg is attached and the frame was captured). A tagged frame belongs to a
// VLAN interface on top of the lagg, never to the untagged stack, whose
// protocols would take the tag for a payload, nor to the protocol's control
// path: a tagged LACPDU is no LACPDU of this link (802.1AX: slow-protocol
// frames are untagged).
//
// An 802.1Q frame goes to the VLAN of its VID (vlan_endpoint.go: a table
// published with the snapshot s, so the lookup is lock- and
// allocation-free), which strips the tag. Unknown VIDs, priority tags
// (VID 0) and 802.1ad/0x9100 outer tags are dropped and counted as
// DropVLAN.
func (p *port) vlanInput(s *snapshot, proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if proto == EtherTypeVLAN && s.vlans != nil {
		p.vlanRx(s, pkt)
		return
	}
	p.ctr.drop(DropVLAN, 1)
}
