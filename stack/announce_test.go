package stack_test

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"

	ustack "github.com/ulagg/ulagg/stack"
)

// TestAnnounceUnicastOnly: Announce sends a gratuitous ARP request and
// reply for every IPv4 address and one unsolicited NA for every IPv6
// address, and nothing for the limited broadcast address gVisor lists
// among the NIC's own.
func TestAnnounceUnicastOnly(t *testing.T) {
	s, err := ustack.NewNetstack()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close(); s.Wait() }()
	ch := channel.New(64, 1500, "\x02\x00\x00\x00\x00\x01")
	addrs := []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")}
	if err := ustack.AddInterface(s, 1, "lagg0", ethernet.New(ch), addrs); err != nil {
		t.Fatal(err)
	}
	for ch.Drain() > 0 { // whatever the NIC sent on its own (DAD, reports)
	}
	if err := ustack.Announce(s, 1); err != nil {
		t.Fatal(err)
	}
	var arps, nas int
	for {
		pkt := ch.Read()
		if pkt == nil {
			break
		}
		b := pkt.ToView().AsSlice()
		pkt.DecRef()
		eth := header.Ethernet(b)
		switch eth.Type() {
		case header.ARPProtocolNumber:
			a := header.ARP(b[header.EthernetMinimumSize:])
			if got := tcpip.AddrFrom4Slice(a.ProtocolAddressSender()); got != tcpip.AddrFrom4([4]byte{192, 0, 2, 1}) {
				t.Errorf("ARP announces %s, want 192.0.2.1", got)
			}
			arps++
		case header.IPv6ProtocolNumber:
			nas++
		}
	}
	if arps != 2 || nas != 1 {
		t.Errorf("got %d ARP and %d IPv6 frames, want 2 and 1", arps, nas)
	}
}
