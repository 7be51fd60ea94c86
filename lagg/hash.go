package lagg

import (
	"encoding/binary"
	"fmt"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// HashLayers selects which protocol layers feed the flow hash.
type HashLayers uint8

// Hash layers. The zero value means all of them.
const (
	HashL2  HashLayers = 1 << iota // MAC addresses and VLAN tag
	HashL3                         // IP addresses and protocol
	HashL4                         // TCP/UDP/SCTP ports (IPv6 flow label when there are none)
	HashAll = HashL2 | HashL3 | HashL4
)

// ParseHashLayers reads names as in the config file ("l2", "l3", "l4").
func ParseHashLayers(names []string) (HashLayers, error) {
	if len(names) == 0 {
		return HashAll, nil
	}
	var h HashLayers
	for _, n := range names {
		switch strings.ToLower(n) {
		case "l2":
			h |= HashL2
		case "l3":
			h |= HashL3
		case "l4":
			h |= HashL4
		default:
			return 0, fmt.Errorf("unknown hash layer %q (want l2, l3 or l4)", n)
		}
	}
	return h, nil
}

func (h HashLayers) String() string {
	var s []string
	for i, n := range []string{"l2", "l3", "l4"} {
		if h&(1<<i) != 0 {
			s = append(s, n)
		}
	}
	return strings.Join(s, ",")
}

const (
	etherTypeVLAN  = 0x8100
	etherTypeQinQ  = 0x88a8
	ipProtoTCP     = 6
	ipProtoUDP     = 17
	ipProtoSCTP    = 132
	ipProtoUDPLite = 136
)

// flowHasher accumulates 64-bit words through a multiply-xorshift mix
// (the finaliser of MurmurHash3/SplitMix64). Every field is folded in as a
// whole word, so there is no per-byte loop and no bias from short fields, as
// NetBSD's h*257+b has.
type flowHasher uint64

func (h *flowHasher) add(v uint64) {
	x := uint64(*h) ^ v
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	*h = flowHasher(x)
}

// addPair folds in two values of one field (source and destination) in a
// fixed order, so both directions of a flow hash alike.
func (h *flowHasher) addPair(a, b uint64) {
	if a > b {
		a, b = b, a
	}
	h.add(a)
	h.add(b)
}

func (h *flowHasher) sum() uint32 {
	return uint32(*h) ^ uint32(*h>>32)
}

func mac64(b []byte) uint64 {
	return uint64(binary.BigEndian.Uint16(b[0:2]))<<32 | uint64(binary.BigEndian.Uint32(b[2:6]))
}

// addIPv6Pair compares the two 128-bit addresses as numbers, so the order
// (and so the hash) is the same from both ends.
func (h *flowHasher) addIPv6Pair(a, b []byte) {
	ah, al := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:16])
	bh, bl := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:16])
	if ah > bh || (ah == bh && al > bl) {
		ah, al, bh, bl = bh, bl, ah, al
	}
	h.add(ah)
	h.add(al)
	h.add(bh)
	h.add(bl)
}

// hashSeed makes an all-zero frame hash to something other than zero.
const hashSeed = 0x9e3779b97f4a7c15

// HashFrame returns the symmetric flow hash of a raw Ethernet frame. It is
// what the transmit path computes from a packet's headers, exposed for tests
// and tools.
func HashFrame(frame []byte, layers HashLayers) uint32 {
	if len(frame) < header.EthernetMinimumSize {
		return 0
	}
	eth := frame[:header.EthernetMinimumSize]
	rest := frame[header.EthernetMinimumSize:]
	return hashHeaders(layers, eth, rest, nil)
}

// hashPacket hashes an outbound packet whose Ethernet header AddHeader pushed.
func hashPacket(pkt *stack.PacketBuffer, layers HashLayers) uint32 {
	eth := pkt.LinkHeader().Slice()
	if len(eth) < header.EthernetMinimumSize {
		return 0
	}
	return hashHeaders(layers, eth, pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice())
}

// hashHeaders hashes an Ethernet header, the network header that follows it
// (l3, possibly with more bytes behind it) and, if known, the transport
// header l4. When l4 is nil, the ports are read from behind the IP header in
// l3 if they are there.
func hashHeaders(layers HashLayers, eth, l3, l4 []byte) uint32 {
	if layers == 0 {
		layers = HashAll
	}
	h := flowHasher(hashSeed)
	etype := binary.BigEndian.Uint16(eth[12:14])
	var vlan uint16
	// An in-frame 802.1Q/802.1ad tag, as received from a trunk; or one a
	// VLAN interface pushed with its Ethernet header (VLAN.AddHeader).
	switch {
	case etype != etherTypeVLAN && etype != etherTypeQinQ:
	case len(eth) >= header.EthernetMinimumSize+vlanTagSize:
		vlan = binary.BigEndian.Uint16(eth[14:16]) & 0x0fff
		etype = binary.BigEndian.Uint16(eth[16:18])
	case len(l3) >= 4:
		vlan = binary.BigEndian.Uint16(l3[0:2]) & 0x0fff
		etype = binary.BigEndian.Uint16(l3[2:4])
		l3 = l3[4:]
	}
	isIP := etype == uint16(header.IPv4ProtocolNumber) || etype == uint16(header.IPv6ProtocolNumber)
	// Frames other than IP hash on L2 whatever the policy: there is nothing else.
	if layers&HashL2 != 0 || !isIP {
		h.addPair(mac64(eth[0:6]), mac64(eth[6:12]))
		h.add(uint64(vlan)<<16 | uint64(etype))
	}
	if !isIP || layers&(HashL3|HashL4) == 0 {
		return h.sum()
	}

	var proto uint8
	var payload []byte // what follows the IP header
	fragment := false
	var flowLabel uint32
	switch etype {
	case uint16(header.IPv4ProtocolNumber):
		if len(l3) < header.IPv4MinimumSize {
			return h.sum()
		}
		ihl := int(l3[0]&0x0f) * 4
		proto = l3[9]
		// Only the first fragment has ports; hash every fragment on L3 alone
		// so a fragmented flow stays on one port.
		fragment = binary.BigEndian.Uint16(l3[6:8])&0x3fff != 0
		if layers&HashL3 != 0 {
			h.addPair(uint64(binary.BigEndian.Uint32(l3[12:16])), uint64(binary.BigEndian.Uint32(l3[16:20])))
			h.add(uint64(proto))
		}
		if ihl >= header.IPv4MinimumSize && len(l3) > ihl {
			payload = l3[ihl:]
		}
	case uint16(header.IPv6ProtocolNumber):
		if len(l3) < header.IPv6MinimumSize {
			return h.sum()
		}
		proto = l3[6]
		flowLabel = binary.BigEndian.Uint32(l3[0:4]) & 0xfffff
		fragment = proto == uint8(header.IPv6FragmentExtHdrIdentifier)
		if layers&HashL3 != 0 {
			h.addIPv6Pair(l3[8:24], l3[24:40])
			h.add(uint64(proto))
		}
		if len(l3) > header.IPv6MinimumSize {
			payload = l3[header.IPv6MinimumSize:]
		}
	}
	if layers&HashL4 == 0 {
		return h.sum()
	}
	if l4 == nil {
		l4 = payload
	}
	switch {
	case !fragment && len(l4) >= 4 && (proto == ipProtoTCP || proto == ipProtoUDP || proto == ipProtoSCTP || proto == ipProtoUDPLite):
		h.addPair(uint64(binary.BigEndian.Uint16(l4[0:2])), uint64(binary.BigEndian.Uint16(l4[2:4])))
	case flowLabel != 0:
		// RFC 6437: the flow label stands in for ports the hash cannot see.
		// It is used only then, because each end picks its own label and
		// mixing it in otherwise would break symmetry.
		h.add(uint64(flowLabel))
	}
	return h.sum()
}
