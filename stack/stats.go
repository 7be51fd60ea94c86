package stack

import (
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Drop is one of the stack's own drop counters: what arrived and was
// refused above the link layer. Names are snake_case, for status and
// metrics alike.
type Drop struct {
	Name  string
	Help  string
	Value uint64
}

// Drops returns the stack's drop counters that tell of broken or hostile
// peers: malformed IP and fragments, checksum errors, full TCP listen
// queues (and the SYN cookies sent instead), full UDP receive buffers, and
// bad ARP and ICMP/NDP, in a fixed order.
func Drops(s *gstack.Stack) []Drop {
	st := s.Stats()
	d := func(name, help string, v uint64) Drop { return Drop{Name: name, Help: help, Value: v} }
	return []Drop{
		d("ip_malformed", "IP packets whose header failed validation.", st.IP.MalformedPacketsReceived.Value()),
		d("ip_malformed_fragments", "IP fragments that failed validation or reassembly.", st.IP.MalformedFragmentsReceived.Value()),
		d("ip_invalid_destination", "IP packets for an address this stack does not have.", st.IP.InvalidDestinationAddressesReceived.Value()),
		d("ip_invalid_source", "IP packets with a source address that must never be seen on the wire.", st.IP.InvalidSourceAddressesReceived.Value()),
		d("l4_malformed", "Packets whose transport header was malformed.", st.NICs.MalformedL4RcvdPackets.Value()),
		d("tcp_checksum_errors", "TCP segments with a bad checksum.", st.TCP.ChecksumErrors.Value()),
		d("tcp_listen_syn_drops", "SYNs dropped because a listen queue was full.", st.TCP.ListenOverflowSynDrop.Value()),
		d("tcp_listen_ack_drops", "Final ACKs dropped because a listen queue was full.", st.TCP.ListenOverflowAckDrop.Value()),
		d("tcp_syn_cookies_sent", "SYN cookies sent because a listen queue was full.", st.TCP.ListenOverflowSynCookieSent.Value()),
		d("tcp_invalid_syn_cookies", "ACKs with an invalid SYN cookie.", st.TCP.ListenOverflowInvalidSynCookieRcvd.Value()),
		d("udp_checksum_errors", "UDP datagrams with a bad checksum.", st.UDP.ChecksumErrors.Value()),
		d("udp_malformed", "Malformed UDP datagrams.", st.UDP.MalformedPacketsReceived.Value()),
		d("udp_receive_buffer_errors", "UDP datagrams dropped because a receive buffer was full.", st.UDP.ReceiveBufferErrors.Value()),
		d("arp_malformed", "Malformed ARP packets.", st.ARP.MalformedPacketsReceived.Value()),
		d("arp_requests_dropped", "ARP requests that could not be sent.", st.ARP.OutgoingRequestsDropped.Value()),
		d("icmpv4_invalid", "Invalid ICMPv4 packets.", st.ICMP.V4.PacketsReceived.Invalid.Value()),
		d("icmpv6_invalid", "Invalid ICMPv6 packets, NDP included.", st.ICMP.V6.PacketsReceived.Invalid.Value()),
		d("dropped", "Every packet the stack dropped, for any reason.", st.DroppedPackets.Value()),
	}
}
