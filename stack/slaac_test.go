package stack_test

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	ustack "github.com/ulagg/ulagg/stack"
)

// routerAdvert is an Ethernet frame holding an RA from fe80::1 (MAC
// routerMAC) to all nodes, router lifetime 1800 s, with prefix
// 2001:db8:1::/64 on-link and autonomous.
func routerAdvert(routerMAC tcpip.LinkAddress) []byte {
	pi := make([]byte, 30)
	pi[0], pi[1] = 64, 0xc0 // L, A
	binary.BigEndian.PutUint32(pi[2:], 3600)
	binary.BigEndian.PutUint32(pi[6:], 3600)
	copy(pi[14:], netip.MustParseAddr("2001:db8:1::").AsSlice())
	opts := header.NDPOptionsSerializer{header.NDPSourceLinkLayerAddressOption(routerMAC), header.NDPPrefixInformation(pi)}
	icmpLen := header.ICMPv6HeaderSize + header.NDPRAMinimumSize + opts.Length()
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+icmpLen)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: routerMAC, DstAddr: "\x33\x33\x00\x00\x00\x01", Type: header.IPv6ProtocolNumber})
	src, dst := tcpip.AddrFrom16([16]byte{0xfe, 0x80, 15: 1}), tcpip.AddrFrom16([16]byte{0xff, 0x02, 15: 1})
	ip := header.IPv6(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv6Fields{PayloadLength: uint16(icmpLen), TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: header.NDPHopLimit, SrcAddr: src, DstAddr: dst})
	icmp := header.ICMPv6(ip.Payload())
	icmp.SetType(header.ICMPv6RouterAdvert)
	ra := icmp.MessageBody()
	ra[0] = 64                               // cur hop limit
	binary.BigEndian.PutUint16(ra[2:], 1800) // router lifetime
	header.NDPRouterAdvert(ra).Options().Serialize(opts)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: src, Dst: dst}))
	return b
}

// TestSLAACFromRouterAdvert: with SLAAC on, a NIC solicits routers, and an
// RA gives the RAWatcher's owner the router, the on-link prefix and the
// EUI-64 address gVisor generated (no temporary one). Without it the RA
// teaches nothing.
func TestSLAACFromRouterAdvert(t *testing.T) {
	w := ustack.NewRAWatcher()
	defer w.Close()
	var mu sync.Mutex
	var got []ustack.RAInfo
	w.SetOnChange(func(nic tcpip.NICID, i ustack.RAInfo) {
		mu.Lock()
		got = append(got, i)
		mu.Unlock()
	})
	s, err := ustack.NewNetstackWithNDP(w)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close(); s.Wait() }()
	mac := tcpip.LinkAddress("\x02\x00\x00\x00\x00\x07")
	ch := channel.New(16, 1500, mac)
	if err := ustack.AddInterface(s, 1, "lagg0", ethernet.New(ch), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ustack.SyncLinkLocal(s, 1); err != nil {
		t.Fatal(err)
	}
	inject := func() {
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(routerAdvert("\x02\x00\x00\x00\x00\x01"))})
		ch.InjectInbound(0, pkt)
		pkt.DecRef()
	}
	inject() // SLAAC off: ignored
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	if len(got) != 0 {
		t.Fatalf("RA handled with SLAAC off: %+v", got)
	}
	mu.Unlock()

	if err := ustack.EnableSLAAC(s, 1, true); err != nil {
		t.Fatal(err)
	}
	// The router solicitation: ICMPv6 133 to ff02::2 from the link-local address.
	rs := ch.Read()
	if rs == nil {
		t.Fatal("no router solicitation sent")
	}
	frame := rs.ToView().AsSlice()
	ip := header.IPv6(frame[header.EthernetMinimumSize:])
	if header.ICMPv6(ip.Payload()).Type() != header.ICMPv6RouterSolicit || ip.DestinationAddress().String() != "ff02::2" || ip.SourceAddress().String() != "fe80::ff:fe00:7" {
		t.Errorf("solicitation: type %d from %s to %s, want 133 from fe80::ff:fe00:7 to ff02::2", header.ICMPv6(ip.Payload()).Type(), ip.SourceAddress(), ip.DestinationAddress())
	}
	rs.DecRef()
	inject()
	want := ustack.RAInfo{
		Routers:   []netip.Addr{netip.MustParseAddr("fe80::1")},
		Prefixes:  []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64")},
		Addresses: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::ff:fe00:7/64")},
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		i := w.Info(1)
		if slices.Equal(i.Routers, want.Routers) && slices.Equal(i.Prefixes, want.Prefixes) && slices.Equal(i.Addresses, want.Addresses) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("learnt %+v, want %+v", i, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		var last ustack.RAInfo
		if n > 0 {
			last = got[n-1]
		}
		mu.Unlock()
		if slices.Equal(last.Addresses, want.Addresses) && slices.Equal(last.Routers, want.Routers) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OnChange got %+v, want a call with %+v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
