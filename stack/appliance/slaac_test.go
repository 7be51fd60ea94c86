package appliance_test

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/ulagg/ulagg/internal/testkit"
	ustack "github.com/ulagg/ulagg/stack"
)

// sendRA has the rig's peer send a router advertisement to all nodes from
// its link-local address, for prefix 2001:db8:7::/64 (on-link, autonomous).
func (r *ctlRig) sendRA(t *testing.T) netip.Addr {
	t.Helper()
	mac := r.peer.NICInfo()[1].LinkAddress
	ll, _ := ustack.LinkLocal(mac)
	pi := make([]byte, 30)
	pi[0], pi[1] = 64, 0xc0
	binary.BigEndian.PutUint32(pi[2:], 3600)
	binary.BigEndian.PutUint32(pi[6:], 3600)
	copy(pi[14:], netip.MustParseAddr("2001:db8:7::").AsSlice())
	opts := header.NDPOptionsSerializer{header.NDPSourceLinkLayerAddressOption(mac), header.NDPPrefixInformation(pi)}
	icmpLen := header.ICMPv6HeaderSize + header.NDPRAMinimumSize + opts.Length()
	b := make([]byte, header.IPv6MinimumSize+icmpLen)
	src, dst := tcpip.AddrFrom16(ll.Addr().As16()), tcpip.AddrFrom16([16]byte{0xff, 0x02, 15: 1})
	ip := header.IPv6(b)
	ip.Encode(&header.IPv6Fields{PayloadLength: uint16(icmpLen), TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: header.NDPHopLimit, SrcAddr: src, DstAddr: dst})
	icmp := header.ICMPv6(ip.Payload())
	icmp.SetType(header.ICMPv6RouterAdvert)
	ra := icmp.MessageBody()
	ra[0] = 64
	binary.BigEndian.PutUint16(ra[2:], 1800)
	header.NDPRouterAdvert(ra).Options().Serialize(opts)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: src, Dst: dst}))
	if err := r.peer.WritePacketToRemote(1, "\x33\x33\x00\x00\x00\x01", ipv6.ProtocolNumber, buffer.MakeWithData(b)); err != nil {
		t.Fatal(err)
	}
	return ll.Addr()
}

// TestApplianceSLAAC: `inet6 slaac` makes the lagg take the advertised
// prefix's EUI-64 address and routes of origin ra, shown in its status;
// `inet6 -slaac` takes them away.
func TestApplianceSLAAC(t *testing.T) {
	r := failoverRig(t)
	r.mustIfconfig("lagg0 inet6 slaac")
	st := r.a.Status()[0]
	iid := st.LinkLocal.Addr().As16()
	want := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 7, 8: iid[8], iid[9], iid[10], iid[11], iid[12], iid[13], iid[14], iid[15]}), 64)
	var router netip.Addr
	testkit.WaitFor(t, 10*time.Second, "a SLAAC address", func() bool {
		router = r.sendRA(t) // the first may come before the lagg listens
		return slices.Equal(r.a.Status()[0].Autoconf, []netip.Prefix{want})
	})
	testkit.WaitFor(t, 5*time.Second, "ra routes", func() bool {
		installed, _ := r.a.Routes()
		return slices.ContainsFunc(installed, func(rt ustack.Route) bool {
			return rt.Origin == ustack.RouteRA && rt.To.Bits() == 0 && rt.Via == router
		}) && slices.ContainsFunc(installed, func(rt ustack.Route) bool {
			return rt.Origin == ustack.RouteRA && rt.To == netip.MustParsePrefix("2001:db8:7::/64")
		})
	})
	if out := r.status("lagg0", false); !strings.Contains(out, "\tinet6 "+want.String()+" flags 0x40<AUTOCONF>\n") {
		t.Errorf("status lacks the autoconf address:\n%s", out)
	}
	// The peer, as the router, has an address in the prefix too.
	if err := ustack.AddAddress(r.peer, 1, netip.MustParsePrefix("2001:db8:7::1/64")); err != nil {
		t.Fatal(err)
	}
	if err := testkit.Ping(r.peer, want.Addr(), 5*time.Second); err != nil {
		t.Errorf("ping the SLAAC address from the peer: %v", err)
	}
	r.mustIfconfig("lagg0 inet6 -slaac")
	if a := r.a.Status()[0].Autoconf; len(a) != 0 {
		t.Errorf("autoconf after -slaac: %v", a)
	}
	installed, _ := r.a.Routes()
	for _, rt := range installed {
		if rt.Origin == ustack.RouteRA {
			t.Errorf("ra route left: %v", rt)
		}
	}
	for _, pa := range r.a.Stack().AllAddresses()[r.a.NIC("lagg0")] {
		if pa.AddressWithPrefix.Address == tcpip.AddrFrom16(want.Addr().As16()) {
			t.Errorf("SLAAC address %s left on the NIC", want)
		}
	}
}
