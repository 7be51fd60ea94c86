package stack_test

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	ustack "github.com/ulagg/ulagg/stack"
)

func v6Addrs(t *testing.T, s interface {
	AllAddresses() map[tcpip.NICID][]tcpip.ProtocolAddress
}) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, pa := range s.AllAddresses()[1] {
		if pa.Protocol == ipv6.ProtocolNumber {
			out = append(out, netip.PrefixFrom(netip.AddrFrom16(pa.AddressWithPrefix.Address.As16()), pa.AddressWithPrefix.PrefixLen))
		}
	}
	return out
}

func TestSyncLinkLocalFollowsMAC(t *testing.T) {
	s, err := ustack.NewNetstack()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close(); s.Wait() }()
	ch := channel.New(16, 1500, "")
	static := netip.MustParsePrefix("fe80::1/64")
	if err := ustack.AddInterface(s, 1, "lagg0", ethernet.New(ch), []netip.Prefix{static}); err != nil {
		t.Fatal(err)
	}
	// No MAC yet: no link-local, and the configured one stays.
	if ll, err := ustack.SyncLinkLocal(s, 1); err != nil || ll.IsValid() {
		t.Fatalf("without a MAC: got %v, %v; want none", ll, err)
	}
	ch.SetLinkAddress("\x02\x00\x00\x00\x00\x01")
	ll, err := ustack.SyncLinkLocal(s, 1)
	want := netip.MustParsePrefix("fe80::ff:fe00:1/64")
	if err != nil || ll != want {
		t.Fatalf("got %v, %v; want %s", ll, err, want)
	}
	if got := v6Addrs(t, s); len(got) != 2 || got[0] != static && got[1] != static {
		t.Fatalf("addresses %v, want %s and %s", got, static, want)
	}
	// Idempotent.
	if ll, err := ustack.SyncLinkLocal(s, 1); err != nil || ll != want || len(v6Addrs(t, s)) != 2 {
		t.Fatalf("second sync: %v, %v, addresses %v", ll, err, v6Addrs(t, s))
	}
	// A new MAC replaces it.
	ch.SetLinkAddress("\x0a\x00\x27\x00\x00\x02")
	ll, err = ustack.SyncLinkLocal(s, 1)
	want2 := netip.MustParsePrefix("fe80::800:27ff:fe00:2/64")
	if err != nil || ll != want2 {
		t.Fatalf("after MAC change: got %v, %v; want %s", ll, err, want2)
	}
	got := v6Addrs(t, s)
	for _, p := range got {
		if p == want {
			t.Errorf("old link-local %s still there: %v", want, got)
		}
	}
	if len(got) != 2 {
		t.Errorf("addresses %v, want %s and %s", got, static, want2)
	}
}
