package linkep

import (
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// AddEthernetHeader pushes the Ethernet header of an outbound packet from
// its egress route and protocol. It is every Ethernet endpoint's AddHeader:
// the ports', the wire's and the lagg's (the NIC calls only the outermost).
func AddEthernetHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseEthernetHeader consumes the Ethernet header of a received packet and
// sets its network protocol; it reports false for a runt.
func ParseEthernetHeader(pkt *stack.PacketBuffer) bool {
	b, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if !ok {
		return false
	}
	pkt.NetworkProtocolNumber = header.Ethernet(b).Type()
	return true
}
