// Package stack is what a userspace router needs to put ulagg's lagg
// endpoints on a gVisor stack: NewNetstack returns a stack tuned as ulagg
// runs it, AddInterface creates a NIC over a lagg (or any LinkEndpoint) with
// its addresses and on-link routes, AddAddress and RemoveAddress change them,
// ProtocolAddress converts a netip.Prefix to gVisor's form, and Announce sends
// the gratuitous ARP and unsolicited neighbour advertisements a lagg asks for
// on failover (see lagg.Lagg.SetAnnouncer). A router with its own stack may
// use just AddInterface and Announce; see the package example.
//
// An embedder that wants static, DHCP or RA routes next to the connected
// ones gives the stack a RouteTable (routes.go) and adds addresses through
// it: it owns the stack's route table from then on, orders it (longest
// prefix, metric, connected first) and resolves gateways to NICs.
//
// The package imports gVisor and the standard library only. The standalone
// appliance built on it (TOML configuration, control socket, capture,
// Prometheus metrics, services) is package
// github.com/ulagg/ulagg/stack/appliance; TestNoApplianceDeps keeps those
// dependencies out of this one.
package stack

import (
	"fmt"
	"net/netip"
	"slices"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// NewNetstack returns a gVisor stack with IPv4, IPv6, ARP, ICMP, TCP and UDP,
// tuned as ulagg runs it: SACK on and RACK off (gVisor's RACK costs much CPU
// for little gain here, as tailscale found).
func NewNetstack() (*gstack.Stack, error) { return NewNetstackWithNDP(nil) }

// NewNetstackWithNDP is NewNetstack whose IPv6 reports what router
// advertisements teach to ndp (an *RAWatcher; slaac.go); nil for none.
func NewNetstackWithNDP(ndp ipv6.NDPDispatcher) (*gstack.Stack, error) {
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocolWithOptions(ipv6.Options{NDPDisp: ndp}), arp.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		HandleLocal:        true,
	})
	sack := tcpip.TCPSACKEnabled(true)
	recovery := tcpip.TCPRecovery(0)
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &recovery} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			s.Close()
			return nil, fmt.Errorf("tcp option %T: %s", opt, err)
		}
	}
	return s, nil
}

// AddInterface creates NIC id over ep, named name, with addrs, and adds an
// on-link route for each prefix.
func AddInterface(s *gstack.Stack, id tcpip.NICID, name string, ep gstack.LinkEndpoint, addrs []netip.Prefix) error {
	if err := s.CreateNICWithOptions(id, ep, gstack.NICOptions{Name: name}); err != nil {
		return fmt.Errorf("create NIC %s: %s", name, err)
	}
	for _, a := range addrs {
		if err := AddAddress(s, id, a); err != nil {
			return fmt.Errorf("NIC %s: %w", name, err)
		}
	}
	return nil
}

// AddAddress adds addr to NIC id with an on-link route for its prefix. The
// route is derived from the address: one route per subnet, kept while any
// address of the NIC is in it (see RemoveAddress).
func AddAddress(s *gstack.Stack, id tcpip.NICID, addr netip.Prefix) error {
	pa := ProtocolAddress(addr)
	if err := s.AddProtocolAddress(id, pa, gstack.AddressProperties{}); err != nil {
		return fmt.Errorf("add address %s: %s", addr, err)
	}
	route := tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: id}
	if !slices.Contains(s.GetRouteTable(), route) {
		s.AddRoute(route)
	}
	return nil
}

// RemoveAddress removes addr from NIC id, and the on-link route of its
// prefix unless another address of the NIC is in the same subnet (with the
// same prefix length): removing 192.168.1.3/24 keeps 192.168.1.0/24 for
// 192.168.1.1/24.
func RemoveAddress(s *gstack.Stack, id tcpip.NICID, addr netip.Prefix) error {
	pa := ProtocolAddress(addr)
	if err := s.RemoveAddress(id, pa.AddressWithPrefix.Address); err != nil {
		return fmt.Errorf("remove address %s: %s", addr, err)
	}
	subnet := pa.AddressWithPrefix.Subnet()
	for _, other := range s.AllAddresses()[id] {
		if other.Protocol == pa.Protocol && other.AddressWithPrefix.Subnet() == subnet {
			return nil // another address still needs the route
		}
	}
	s.RemoveRoutes(func(r tcpip.Route) bool { return r.NIC == id && r.Destination == subnet })
	return nil
}

// ProtocolAddress converts a prefix to gVisor's form.
func ProtocolAddress(p netip.Prefix) tcpip.ProtocolAddress {
	proto := ipv4.ProtocolNumber
	if p.Addr().Is6() && !p.Addr().Is4In6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.ProtocolAddress{
		Protocol: proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpip.AddrFromSlice(p.Addr().Unmap().AsSlice()),
			PrefixLen: p.Bits(),
		},
	}
}

// ipv6AllNodes is ff02::1 and its multicast MAC.
var (
	ipv6AllNodes    = tcpip.AddrFrom16([16]byte{0xff, 0x02, 15: 1})
	ipv6AllNodesMAC = tcpip.LinkAddress("\x33\x33\x00\x00\x00\x01")
)

// Announce tells the link who has NIC id's addresses now: a gratuitous ARP
// for every IPv4 address and an unsolicited neighbour advertisement
// (override set) for every IPv6 address. gVisor sends neither on its own;
// Linux bonding does it on failover (num_grat_arp, num_unsol_na).
func Announce(s *gstack.Stack, id tcpip.NICID) error {
	mac := s.NICInfo()[id].LinkAddress
	var firstErr error
	send := func(addr tcpip.Address, dst tcpip.LinkAddress, proto tcpip.NetworkProtocolNumber, b []byte) {
		payload := buffer.MakeWithData(b)
		err := s.WritePacketToRemote(id, dst, proto, payload)
		if _, gone := err.(*tcpip.ErrUnknownDevice); gone {
			payload.Release() // the stack returns before taking it
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("announce %s: %s", addr, err)
		}
	}
	for _, pa := range s.AllAddresses()[id] {
		addr := pa.AddressWithPrefix.Address
		// gVisor lists the limited broadcast address among an IPv4 NIC's
		// own; announce only unicast addresses.
		if addr == header.IPv4Broadcast || addr.Unspecified() || header.IsV4MulticastAddress(addr) || header.IsV6MulticastAddress(addr) {
			continue
		}
		switch pa.Protocol {
		case ipv4.ProtocolNumber:
			// Linux updates its neighbour entries from the request form,
			// gVisor only from replies: send both.
			send(addr, header.EthernetBroadcastAddress, arp.ProtocolNumber, gratuitousARP(mac, addr, header.ARPRequest))
			send(addr, header.EthernetBroadcastAddress, arp.ProtocolNumber, gratuitousARP(mac, addr, header.ARPReply))
		case ipv6.ProtocolNumber:
			send(addr, ipv6AllNodesMAC, ipv6.ProtocolNumber, unsolicitedNA(mac, addr))
		}
	}
	return firstErr
}

// gratuitousARP is an ARP packet of the given op for our own address, sender
// and target alike (RFC 5227 announcement).
func gratuitousARP(mac tcpip.LinkAddress, addr tcpip.Address, op header.ARPOp) []byte {
	b := make([]byte, header.ARPSize)
	h := header.ARP(b)
	h.SetIPv4OverEthernet()
	h.SetOp(op)
	copy(h.HardwareAddressSender(), mac)
	copy(h.ProtocolAddressSender(), addr.AsSlice())
	copy(h.ProtocolAddressTarget(), addr.AsSlice())
	return b
}

// unsolicitedNA is an IPv6 packet with a neighbour advertisement for addr
// to all nodes, override flag set, with our MAC as target link-layer address.
func unsolicitedNA(mac tcpip.LinkAddress, addr tcpip.Address) []byte {
	opts := header.NDPOptionsSerializer{header.NDPTargetLinkLayerAddressOption(mac)}
	icmpLen := header.ICMPv6NeighborAdvertMinimumSize + opts.Length()
	b := make([]byte, header.IPv6MinimumSize+icmpLen)
	ip := header.IPv6(b)
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(icmpLen),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit,
		SrcAddr:           addr,
		DstAddr:           ipv6AllNodes,
	})
	icmp := header.ICMPv6(b[header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6NeighborAdvert)
	na := header.NDPNeighborAdvert(icmp.MessageBody())
	na.SetTargetAddress(addr)
	na.SetOverrideFlag(true)
	na.Options().Serialize(opts)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: addr, Dst: ipv6AllNodes}))
	return b
}
