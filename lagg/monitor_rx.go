package lagg

import (
	"math/bits"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// monSnap is the receive path's view of the link monitor, in the
// snapshot: with the monitor off (on false) only the ports' MACs.
type monSnap struct {
	on     bool
	rx     *[MaxPorts]monRx
	mac    [MaxPorts]tcpip.LinkAddress // each slot's probe MAC
	ll     [MaxPorts][16]byte          // each slot's NS source
	slots  uint64                      // slots whose probe MAC is their own
	shared uint64                      // slots whose probe MAC is the lagg's
	byDst  uint64                      // slots credited with replies to their MAC on any port
	loose  uint64                      // slots alive on any traffic (validate)
	arp    [][4]byte
	ns     [][16]byte
}

// Sizes of what monitorInput reads: an ARP reply, and an NA with one option.
const (
	arpFrameLen  = header.EthernetMinimumSize + header.ARPSize
	naMinLen     = header.EthernetMinimumSize + header.IPv6MinimumSize + header.ICMPv6NeighborAdvertMinimumSize
	monPeekLen   = header.EthernetMinimumSize + header.IPv6MinimumSize + 64
	icmpv6TypeNA = 136
	ipv6NextOff  = header.EthernetMinimumSize + 6                      // IPv6 next header
	naTypeOff    = header.EthernetMinimumSize + header.IPv6MinimumSize // ICMPv6 type
)

// monitorInput runs first on every frame a port delivers (but slow
// protocols) and reports whether it consumed pkt. Ports deliver frames to
// their own MAC besides the lagg's; those are the monitor's replies or
// else not the lagg's, and are dropped (DropForeignMAC). Frames to the
// lagg's MAC or a group cost one comparison with the monitor off. It never
// allocates.
func (p *port) monitorInput(s *snapshot, proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) bool {
	m := s.mon
	// Ports mark frames to their own MAC, not the lagg's, PacketOtherHost
	// (linkep.Port), so with the monitor off the rest is one comparison.
	if m == nil || !m.on && pkt.PktType != tcpip.PacketOtherHost {
		return false
	}
	eth := pkt.LinkHeader().Slice()
	if len(eth) < header.EthernetMinimumSize {
		return false
	}
	dst := eth[:header.EthernetAddressSize]
	unicast := dst[0]&1 == 0
	forLagg := !unicast || string(dst) == string(s.mac)
	switch {
	case forLagg && !m.on:
		return false
	case forLagg:
	case !m.isPortMAC(dst):
		return false // no port's: the port let it through, the stack decides
	case !m.on:
		p.ctr.drop(DropForeignMAC, 1)
		return true
	}
	if m.loose&p.bit() != 0 {
		if rx := &m.rx[p.slot]; !rx.heard.Load() {
			rx.heard.Store(true)
		}
	}
	// Replies to a port's own MAC, and, when a port probes with the
	// lagg's MAC, replies to it: the switch delivers those on any port.
	if unicast && (!forLagg || m.shared != 0) &&
		(proto == header.ARPProtocolNumber || proto == header.IPv6ProtocolNumber) {
		var b [monPeekLen]byte
		// Most IPv6 frames to the lagg are data: a short look first.
		if proto == header.IPv6ProtocolNumber && forLagg {
			if n := peekFrame(pkt, b[:naTypeOff+1]); n <= naTypeOff || b[ipv6NextOff] != uint8(header.ICMPv6ProtocolNumber) || b[naTypeOff] != icmpv6TypeNA {
				return false
			}
		}
		n := peekFrame(pkt, b[:])
		if m.reply(p, proto, b[:n]) {
			return true
		}
	}
	if !forLagg {
		p.ctr.drop(DropForeignMAC, 1)
		return true
	}
	return false
}

// isPortMAC reports whether dst is the probe MAC of a port.
func (m *monSnap) isPortMAC(dst []byte) bool {
	for slots := m.slots; slots != 0; slots &= slots - 1 {
		if string(dst) == string(m.mac[bits.TrailingZeros64(slots)]) {
			return true
		}
	}
	return false
}

// reply reports whether frame is a reply to a monitor probe, and credits
// the target to the port whose probe it answers if it came in on that
// port, or on any port for the ports in byDst (monitorSnapLocked says
// which and why). A reply to another port's probe that came in on p (a
// confused switch) is consumed but proves nothing.
func (m *monSnap) reply(p *port, proto tcpip.NetworkProtocolNumber, frame []byte) bool {
	dst := frame[:header.EthernetAddressSize]
	if proto == header.ARPProtocolNumber {
		if len(frame) < arpFrameLen {
			return false
		}
		a := header.ARP(frame[header.EthernetMinimumSize:])
		// A probe's answer goes to sender IP 0.0.0.0: never the stack's.
		if !a.IsValid() || a.Op() != header.ARPReply || [4]byte(a.ProtocolAddressTarget()) != [4]byte{} {
			return false
		}
		if string(a.HardwareAddressTarget()) != string(dst) {
			return false
		}
		for i, t := range m.arp {
			if [4]byte(a.ProtocolAddressSender()) == t {
				m.credit(p, dst, nil, i)
				return true
			}
		}
		return false
	}
	if len(frame) < naMinLen {
		return false
	}
	ip := header.IPv6(frame[header.EthernetMinimumSize:])
	if ip.NextHeader() != uint8(header.ICMPv6ProtocolNumber) || ip.HopLimit() != 255 {
		return false
	}
	plen := int(ip.PayloadLength())
	icmp := header.ICMPv6(ip[header.IPv6MinimumSize:])
	if plen < header.ICMPv6NeighborAdvertMinimumSize || plen > len(icmp) || icmp.Type() != icmpv6TypeNA || icmp.Code() != 0 {
		return false
	}
	icmp = icmp[:plen]
	var llDst [16]byte
	copy(llDst[:], frame[header.EthernetMinimumSize+24:header.EthernetMinimumSize+40])
	idx := -1
	for i, t := range m.ns {
		if [16]byte(icmp[8:24]) == t {
			idx = i
			break
		}
	}
	if idx < 0 || llDst[0] != 0xfe || llDst[1]&0xc0 != 0x80 {
		return false
	}
	src := tcpip.AddrFrom16([16]byte(frame[header.EthernetMinimumSize+8 : header.EthernetMinimumSize+24]))
	xsum := header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, src, tcpip.AddrFrom16(llDst), uint16(plen))
	if checksum.Checksum(icmp, xsum) != 0xffff {
		return false
	}
	m.credit(p, dst, &llDst, len(m.arp)+idx)
	return true
}

// credit marks target bit i answered for the port whose probe the reply
// answers — the one with the probe MAC dst (and, for NS, link-local ll) —
// if the reply came in on that port (p) or the port is in byDst.
func (m *monSnap) credit(p *port, dst []byte, ll *[16]byte, i int) {
	for slots := m.slots | m.shared; slots != 0; slots &= slots - 1 {
		slot := bits.TrailingZeros64(slots)
		if string(dst) != string(m.mac[slot]) || ll != nil && *ll != m.ll[slot] {
			continue
		}
		if slot == p.slot || m.byDst&(1<<slot) != 0 {
			rx := &m.rx[slot]
			rx.got.Or(1 << i)
			rx.replies.Add(1)
		}
		return
	}
}

// arpProbe is an RFC 5227 ARP probe for target from mac.
func arpProbe(mac tcpip.LinkAddress, target netip.Addr) []byte {
	b := make([]byte, arpFrameLen)
	eth := header.Ethernet(b)
	eth.Encode(&header.EthernetFields{SrcAddr: mac, DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(b[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), mac)
	t := target.As4()
	copy(a.ProtocolAddressTarget(), t[:])
	return b
}

// nsProbe is a neighbour solicitation for target from the link-local of
// mac, with mac as source link-layer address.
func nsProbe(mac tcpip.LinkAddress, target netip.Addr) []byte {
	const icmpLen = header.ICMPv6NeighborSolicitMinimumSize + 8
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+icmpLen)
	t := target.As16()
	snm := header.SolicitedNodeAddr(tcpip.AddrFrom16(t))
	src := tcpip.AddrFrom16(linkLocal(mac))
	eth := header.Ethernet(b)
	eth.Encode(&header.EthernetFields{SrcAddr: mac, DstAddr: header.EthernetAddressFromMulticastIPv6Address(snm), Type: header.IPv6ProtocolNumber})
	ip := header.IPv6(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     icmpLen,
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          255,
		SrcAddr:           src,
		DstAddr:           snm,
	})
	icmp := header.ICMPv6(b[header.EthernetMinimumSize+header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6NeighborSolicit)
	copy(icmp[8:24], t[:])
	icmp[24], icmp[25] = 1, 1 // source link-layer address option, 8 octets
	copy(icmp[26:32], mac)
	icmp.SetChecksum(^checksum.Checksum(icmp, header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, src, snm, icmpLen)))
	return b
}
