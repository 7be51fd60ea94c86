package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// minBOOTP is the smallest BOOTP message some servers and relays accept
// (RFC 1542 section 2.1).
const minBOOTP = 300

// broadcast sends a DHCP message from src:68 to 255.255.255.255:67 as a
// whole IPv4 datagram written to the Ethernet broadcast address, below the
// stack's routing: it works while the NIC has no address.
func (c *Client) broadcast(src netip.Addr, msg []byte) error {
	if len(msg) < minBOOTP {
		msg = append(msg, make([]byte, minBOOTP-len(msg))...)
	}
	srcAddr := tcpip.AddrFrom4(src.As4())
	udpLen := header.UDPMinimumSize + len(msg)
	total := header.IPv4MinimumSize + udpLen
	b := make([]byte, total)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(total),
		TTL:         64,
		Protocol:    uint8(header.UDPProtocolNumber),
		SrcAddr:     srcAddr,
		DstAddr:     header.IPv4Broadcast,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(b[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: ClientPort, DstPort: ServerPort, Length: uint16(udpLen)})
	copy(u.Payload(), msg)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, srcAddr, header.IPv4Broadcast, uint16(udpLen))
	xsum = checksum.Checksum(msg, xsum)
	if s := ^u.CalculateChecksum(xsum); s != 0 {
		u.SetChecksum(s)
	} else {
		u.SetChecksum(0xffff) // 0 means "no checksum" in UDP
	}
	payload := buffer.MakeWithData(b)
	if err := c.cfg.Stack.WritePacketToRemote(c.cfg.NIC, header.EthernetBroadcastAddress, ipv4.ProtocolNumber, payload); err != nil {
		if _, gone := err.(*tcpip.ErrUnknownDevice); gone {
			payload.Release() // the stack returns before taking it
		}
		return fmt.Errorf("broadcast on NIC %d: %s", c.cfg.NIC, err)
	}
	return nil
}

// unicast sends a DHCP message to server:67 from the leased address.
func (c *Client) unicast(server netip.Addr, msg []byte) error {
	if !server.IsValid() {
		return errors.New("no server address")
	}
	_, err := c.conn.WriteTo(msg, &net.UDPAddr{IP: server.AsSlice(), Port: ServerPort})
	return err
}

// releaseResolveTimeout bounds how long Close waits to learn the server's
// MAC before sending the RELEASE: the address goes right after it, and
// gVisor drops a datagram queued for resolution once its source is gone.
const releaseResolveTimeout = time.Second

// resolve waits (up to timeout) until the neighbour entry of the next hop
// to dst is known, so that a unicast datagram to it leaves at once. It only
// waits for an on-link dst; the route of any other is the owner's.
func (c *Client) resolve(dst, local netip.Addr, timeout time.Duration) {
	done := make(chan struct{}, 1)
	err := c.cfg.Stack.GetLinkAddress(c.cfg.NIC, tcpip.AddrFrom4(dst.As4()), tcpip.AddrFrom4(local.As4()), ipv4.ProtocolNumber,
		func(gstack.LinkResolutionResult) { done <- struct{}{} })
	if _, wait := err.(*tcpip.ErrWouldBlock); !wait {
		return
	}
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

// parseLease reads the lease an OFFER or ACK grants, starting at start.
// fallback is the server identifier to use when the reply has none.
func parseLease(msg *dhcpv4.DHCPv4, start time.Time, fallback netip.Addr) (Lease, error) {
	addr, ok := netip.AddrFromSlice(msg.YourIPAddr.To4())
	if !ok || !addr.IsGlobalUnicast() && !addr.IsPrivate() || addr.IsLoopback() {
		return Lease{}, fmt.Errorf("offered address %v is not a unicast IPv4 address", msg.YourIPAddr)
	}
	bits := classfulBits(addr)
	if mask := msg.SubnetMask(); mask != nil {
		ones, size := mask.Size()
		if size != 32 || ones == 0 || ones > 30 && ones != 32 {
			return Lease{}, fmt.Errorf("subnet mask %v is not usable", net.IP(mask))
		}
		bits = ones
	}
	l := Lease{Address: netip.PrefixFrom(addr, bits), Start: start}
	if s, ok := netip.AddrFromSlice(msg.ServerIdentifier().To4()); ok && !s.IsUnspecified() {
		l.Server = s
	} else {
		l.Server = fallback
	}
	if !l.Server.IsValid() {
		return Lease{}, errors.New("no server identifier")
	}
	l.Time = msg.IPAddressLeaseTime(0)
	if l.Time <= 0 {
		return Lease{}, errors.New("no lease time")
	}
	l.T1 = msg.IPAddressRenewalTime(l.Time / 2)
	l.T2 = msg.IPAddressRebindingTime(l.Time * 7 / 8)
	if l.T1 <= 0 || l.T2 < l.T1 || l.T2 > l.Time {
		l.T1, l.T2 = l.Time/2, l.Time*7/8 // inconsistent times: RFC 2131 defaults
	}
	for _, r := range msg.Router() {
		if a, ok := netip.AddrFromSlice(r.To4()); ok && !a.IsUnspecified() {
			l.Router = a
			break
		}
	}
	for _, d := range msg.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	if mtu, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, msg.Options); err == nil && mtu >= 68 {
		l.MTU = mtu
	}
	return l, nil
}

// classfulBits is the prefix length of addr's class, for a lease without a
// subnet mask option.
func classfulBits(a netip.Addr) int {
	switch b := a.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	}
	return 24
}
