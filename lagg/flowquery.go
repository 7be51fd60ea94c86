package lagg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// "Which port does this flow leave on?" (ovs-appctl bond/hash): the answer
// comes from the transmitter the data path uses, never from a copy of its
// logic.

// Flow names one flow for PortFor's frame: a transport protocol between
// two address:port pairs, with the MACs the frame carries and an optional
// 802.1Q VLAN (0: untagged).
type Flow struct {
	Proto    uint8 // IP protocol number: 6 TCP, 17 UDP, 132 SCTP, ...
	Src, Dst netip.AddrPort
	SrcMAC   tcpip.LinkAddress
	DstMAC   tcpip.LinkAddress
	VLAN     uint16
}

// Frame builds the headers of a frame of f (Ethernet, an optional tag, IP
// and the first 8 bytes of the transport header, which hold the ports).
func (f Flow) Frame() ([]byte, error) {
	src, dst := f.Src.Addr().Unmap(), f.Dst.Addr().Unmap()
	switch {
	case !src.IsValid() || !dst.IsValid():
		return nil, errors.New("flow: source and destination addresses are required")
	case src.Is4() != dst.Is4():
		return nil, fmt.Errorf("flow: %s and %s are not of the same IP version", src, dst)
	case f.VLAN > 4094:
		return nil, fmt.Errorf("flow: VLAN %d out of range 0..4094", f.VLAN)
	}
	for _, m := range []tcpip.LinkAddress{f.SrcMAC, f.DstMAC} {
		if m != "" && len(m) != header.EthernetAddressSize {
			return nil, fmt.Errorf("flow: %q is not a MAC address", m)
		}
	}
	b := make([]byte, 0, 18+header.IPv6MinimumSize+8)
	b = append(b, pad6(f.DstMAC)...)
	b = append(b, pad6(f.SrcMAC)...)
	etype := header.IPv4ProtocolNumber
	if src.Is6() {
		etype = header.IPv6ProtocolNumber
	}
	if f.VLAN != 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(EtherTypeVLAN))
		b = binary.BigEndian.AppendUint16(b, f.VLAN)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(etype))
	if src.Is4() {
		ip := make([]byte, header.IPv4MinimumSize)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:4], header.IPv4MinimumSize+8)
		ip[8] = 64
		ip[9] = f.Proto
		s4, d4 := src.As4(), dst.As4()
		copy(ip[12:16], s4[:])
		copy(ip[16:20], d4[:])
		binary.BigEndian.PutUint16(ip[10:12], ^checksum.Checksum(ip, 0))
		b = append(b, ip...)
	} else {
		ip := make([]byte, header.IPv6MinimumSize)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:6], 8)
		ip[6] = f.Proto
		ip[7] = 64
		s16, d16 := src.As16(), dst.As16()
		copy(ip[8:24], s16[:])
		copy(ip[24:40], d16[:])
		b = append(b, ip...)
	}
	b = binary.BigEndian.AppendUint16(b, f.Src.Port())
	b = binary.BigEndian.AppendUint16(b, f.Dst.Port())
	return append(b, 0, 0, 0, 0), nil
}

func pad6(m tcpip.LinkAddress) []byte {
	if m == "" {
		return make([]byte, header.EthernetAddressSize)
	}
	return []byte(m)
}

// ErrNoSinglePort is PortFor's error when the protocol sends a flow on no
// one port (roundrobin, broadcast).
var ErrNoSinglePort = errors.New("no single port per flow")

// PortFor returns the port a frame with frame's headers would leave on
// now: the transmitter of the published snapshot decides, as for
// WritePackets. frame is an outbound Ethernet frame (an 802.1Q tag, if
// any, in the frame), as Flow.Frame builds. With loadbalance and lacp the
// flow's bucket is bound as a first frame would bind it, so the flow then
// takes that port. It fails when the lagg is down or the protocol sends a
// flow on no one port (ErrNoSinglePort: roundrobin, broadcast).
func (l *Lagg) PortFor(frame []byte) (string, error) {
	pkt, err := flowPacket(frame)
	if err != nil {
		return "", err
	}
	defer pkt.DecRef()
	l.mu.Lock()
	proto := l.cfg.Proto
	l.mu.Unlock()
	s := l.snap.Load()
	if !s.dist.up || s.dist.tx == nil {
		return "", fmt.Errorf("lagg %s (%s) is down: no port transmits", l.name, proto)
	}
	if p := s.dist.tx.portFor(pkt); p != nil {
		return p.name, nil
	}
	names := make([]string, len(s.dist.txPorts))
	for i, p := range s.dist.txPorts {
		names[i] = p.name
	}
	how := "frames take turns over"
	if proto == ProtoBroadcast {
		how = "every frame leaves on each of"
	}
	return "", fmt.Errorf("lagg %s (%s): %w: %s %s", l.name, proto, ErrNoSinglePort, how, strings.Join(names, ", "))
}

// flowPacket makes frame an outbound packet whose link, network and
// transport headers are where the stack's AddHeader puts them.
func flowPacket(frame []byte) (*stack.PacketBuffer, error) {
	if len(frame) < header.EthernetMinimumSize {
		return nil, fmt.Errorf("flow: frame of %d bytes has no Ethernet header", len(frame))
	}
	l3 := header.EthernetMinimumSize
	etype := binary.BigEndian.Uint16(frame[12:14])
	tag := 0
	if isVLANTPID(tcpip.NetworkProtocolNumber(etype)) && len(frame) >= l3+4 {
		tag = 4
		etype = binary.BigEndian.Uint16(frame[l3+2 : l3+4])
	}
	ipLen := 0
	switch tcpip.NetworkProtocolNumber(etype) {
	case header.IPv4ProtocolNumber:
		if len(frame) >= l3+tag+header.IPv4MinimumSize {
			ipLen = int(frame[l3+tag]&0x0f) * 4
		}
	case header.IPv6ProtocolNumber:
		ipLen = header.IPv6MinimumSize
	}
	if ipLen != 0 && len(frame) < l3+tag+ipLen {
		return nil, fmt.Errorf("flow: frame of %d bytes is shorter than its IP header", len(frame))
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if ipLen != 0 {
		pkt.NetworkHeader().Consume(tag + ipLen)
		if rest := len(frame) - l3 - tag - ipLen; rest > 0 {
			pkt.TransportHeader().Consume(min(rest, 8))
		}
	}
	return pkt, nil
}
