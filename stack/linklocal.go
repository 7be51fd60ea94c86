package stack

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// LinkLocal returns the EUI-64 IPv6 link-local address (RFC 4291 appendix
// A) of mac, fe80::/64, or false if mac is not a unicast Ethernet address.
func LinkLocal(mac tcpip.LinkAddress) (netip.Prefix, bool) {
	if !header.IsValidUnicastEthernetAddress(mac) {
		return netip.Prefix{}, false
	}
	a := header.LinkLocalAddr(mac)
	return netip.PrefixFrom(netip.AddrFrom16(a.As16()), 64), true
}

// SyncLinkLocal gives NIC id the link-local address of its MAC now and
// removes the one an earlier MAC gave it (any other EUI-64 link-local
// address: a configured fe80:: address without ff:fe in the middle stays),
// so that the address follows the lagg's MAC. gVisor's own AutoGenLinkLocal
// derives it once, when the NIC is enabled, and a lagg takes its MAC from
// its first port later. It returns the address, invalid if the MAC is not
// unicast (no port yet), in which case the NIC has none.
func SyncLinkLocal(s *gstack.Stack, id tcpip.NICID) (netip.Prefix, error) {
	info, ok := s.NICInfo()[id]
	if !ok {
		return netip.Prefix{}, fmt.Errorf("link-local: no NIC %d", id)
	}
	want, ok := LinkLocal(info.LinkAddress)
	have := false
	for _, pa := range info.ProtocolAddresses {
		if pa.Protocol != ipv6.ProtocolNumber {
			continue
		}
		a := netip.AddrFrom16(pa.AddressWithPrefix.Address.As16())
		switch {
		case ok && a == want.Addr():
			have = true
		case a.IsLinkLocalUnicast() && isEUI64(a):
			if err := s.RemoveAddress(id, pa.AddressWithPrefix.Address); err != nil {
				return netip.Prefix{}, fmt.Errorf("link-local: remove %s: %s", a, err)
			}
		}
	}
	if !ok || have {
		return want, nil
	}
	if err := s.AddProtocolAddress(id, ProtocolAddress(want), gstack.AddressProperties{}); err != nil {
		return netip.Prefix{}, fmt.Errorf("link-local: add %s: %s", want, err)
	}
	return want, nil
}

// isEUI64 reports whether a's interface identifier has the ff:fe of an
// EUI-64 derived from a MAC.
func isEUI64(a netip.Addr) bool {
	b := a.As16()
	return b[11] == 0xff && b[12] == 0xfe
}
