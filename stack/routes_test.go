package stack_test

import (
	"net/netip"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	ustack "github.com/ulagg/ulagg/stack"
)

// routeStack is a stack with NICs 1 and 2 over channel endpoints and no
// addresses.
func routeStack(t *testing.T) (*gstack.Stack, *ustack.RouteTable) {
	t.Helper()
	s, err := ustack.NewNetstack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); s.Wait() })
	for _, id := range []tcpip.NICID{1, 2} {
		if err := ustack.AddInterface(s, id, "ch"+string(rune('0'+id)), channel.New(4, 1500, tcpip.LinkAddress([]byte{2, 0, 0, 0, 0, byte(id)})), nil); err != nil {
			t.Fatal(err)
		}
	}
	return s, ustack.NewRouteTable(s)
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

// nextHop is where gVisor sends a packet for dst: its NIC and gateway
// (dst itself when on-link), or ok=false.
func nextHop(t *testing.T, s *gstack.Stack, dst string) (tcpip.NICID, string, bool) {
	t.Helper()
	a := ip(dst)
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	r, err := s.FindRoute(0, tcpip.Address{}, tcpip.AddrFromSlice(a.AsSlice()), proto, false)
	if err != nil {
		return 0, "", false
	}
	defer r.Release()
	hop := r.NextHop()
	if hop.BitLen() == 0 {
		hop = r.RemoteAddress()
	}
	return r.NICID(), hop.String(), true
}

func mustAdd(t *testing.T, rt *ustack.RouteTable, nic tcpip.NICID, p string) {
	t.Helper()
	if err := rt.AddAddress(nic, pfx(p)); err != nil {
		t.Fatal(err)
	}
}

// TestRouteTableOrder: the more specific route wins whatever was added
// first; among defaults the lowest metric wins; a gateway without a NIC
// goes out of the NIC whose subnet holds it; IPv4 and IPv6 alike.
func TestRouteTableOrder(t *testing.T) {
	s, rt := routeStack(t)
	mustAdd(t, rt, 1, "192.168.1.1/24")
	mustAdd(t, rt, 2, "10.1.0.1/24")
	mustAdd(t, rt, 1, "fd00::1/64")
	rt.Set(ustack.RouteStatic, 0, []ustack.Route{
		{To: pfx("0.0.0.0/0"), Via: ip("192.168.1.254"), Metric: 10},
		{To: pfx("10.0.0.0/8"), Via: ip("10.1.0.254")},
		{To: pfx("::/0"), Via: ip("fd00::fe")},
	})
	rt.Set(ustack.RouteDHCP, 2, []ustack.Route{{To: pfx("0.0.0.0/0"), Via: ip("10.1.0.253"), Metric: 5}})

	for _, c := range []struct {
		dst, hop string
		nic      tcpip.NICID
	}{
		{"8.8.8.8", "10.1.0.253", 2},      // DHCP default, metric 5 < 10
		{"10.9.9.9", "10.1.0.254", 2},     // /8 beats the defaults
		{"192.168.1.7", "192.168.1.7", 1}, // connected
		{"2001:db8::1", "fd00::fe", 1},
	} {
		nic, hop, ok := nextHop(t, s, c.dst)
		if !ok || nic != c.nic || hop != c.hop {
			t.Errorf("%s: got nic %d via %s (found %v), want nic %d via %s", c.dst, nic, hop, ok, c.nic, c.hop)
		}
	}
	got := rt.Routes()
	if len(got) != 7 || got[len(got)-1].To != pfx("0.0.0.0/0") || got[len(got)-1].Metric != 10 {
		t.Errorf("routes: got %v, want 7 with the metric-10 default last", got)
	}
	// The stack's own table is the same rows in the same order.
	gt := s.GetRouteTable()
	if len(gt) != len(got) {
		t.Fatalf("stack table: got %v, want %d rows", gt, len(got))
	}
	for i, r := range got {
		if gt[i].NIC != r.NIC || gt[i].Destination.Prefix() != r.To.Bits() {
			t.Errorf("row %d: stack has %v, table has %v", i, gt[i], r)
		}
	}

	// Dropping the DHCP routes leaves the static default.
	rt.Set(ustack.RouteDHCP, 2, nil)
	if nic, hop, _ := nextHop(t, s, "8.8.8.8"); nic != 1 || hop != "192.168.1.254" {
		t.Errorf("after DHCP gone: got nic %d via %s, want 1 via 192.168.1.254", nic, hop)
	}
	rt.Set(ustack.RouteStatic, 0, nil)
	if _, _, ok := nextHop(t, s, "8.8.8.8"); ok {
		t.Errorf("after all defaults gone: 8.8.8.8 still routable")
	}
}

// TestRouteTableConnectedPerAddress: the subnet route lives while any
// address needs it (removing an alias keeps the primary's route).
func TestRouteTableConnectedPerAddress(t *testing.T) {
	s, rt := routeStack(t)
	mustAdd(t, rt, 1, "192.168.1.1/24")
	mustAdd(t, rt, 1, "192.168.1.3/24")
	mustAdd(t, rt, 1, "192.168.1.9/32")
	if err := rt.RemoveAddress(1, pfx("192.168.1.3/24")); err != nil {
		t.Fatal(err)
	}
	if err := rt.RemoveAddress(1, pfx("192.168.1.9/32")); err != nil {
		t.Fatal(err)
	}
	if nic, _, ok := nextHop(t, s, "192.168.1.50"); !ok || nic != 1 {
		t.Fatalf("after removing aliases: 192.168.1.50 not on NIC 1 (%d %v); routes %v", nic, ok, rt.Routes())
	}
	if n := len(rt.Routes()); n != 1 {
		t.Errorf("routes: got %v, want only 192.168.1.0/24", rt.Routes())
	}
	if err := rt.RemoveAddress(1, pfx("192.168.1.1/24")); err != nil {
		t.Fatal(err)
	}
	if len(rt.Routes()) != 0 || len(s.GetRouteTable()) != 0 {
		t.Errorf("after the last address: got %v / %v, want no routes", rt.Routes(), s.GetRouteTable())
	}
	if err := rt.RemoveAddress(1, pfx("192.168.1.1/24")); err == nil {
		t.Errorf("removing an absent address: got nil error")
	}
}

// TestRouteTableGatewayResolution: a route via a gateway in no connected
// subnet waits, installs when an address makes it reachable, and waits
// again when that address goes; ForgetNIC drops the NIC's own routes.
func TestRouteTableGatewayResolution(t *testing.T) {
	s, rt := routeStack(t)
	def := ustack.Route{To: pfx("0.0.0.0/0"), Via: ip("10.1.0.254")}
	rt.Set(ustack.RouteStatic, 0, []ustack.Route{def})
	if len(rt.Routes()) != 0 || len(rt.Unresolved()) != 1 {
		t.Fatalf("unreachable gateway: installed %v, unresolved %v", rt.Routes(), rt.Unresolved())
	}
	mustAdd(t, rt, 2, "10.1.0.1/24")
	if nic, hop, _ := nextHop(t, s, "1.1.1.1"); nic != 2 || hop != "10.1.0.254" {
		t.Errorf("after address: got nic %d via %s, want 2 via 10.1.0.254", nic, hop)
	}
	if err := rt.RemoveAddress(2, pfx("10.1.0.1/24")); err != nil {
		t.Fatal(err)
	}
	if len(rt.Unresolved()) != 1 || slices.ContainsFunc(s.GetRouteTable(), func(r tcpip.Route) bool { return r.Destination.Prefix() == 0 }) {
		t.Errorf("after address gone: stack %v, unresolved %v", s.GetRouteTable(), rt.Unresolved())
	}

	// Family mismatch never installs.
	rt.Set(ustack.RouteStatic, 1, []ustack.Route{{To: pfx("::/0"), Via: ip("10.1.0.254")}})
	if len(rt.Routes()) != 0 {
		t.Errorf("mismatched family installed: %v", rt.Routes())
	}

	mustAdd(t, rt, 1, "192.168.1.1/24")
	rt.Set(ustack.RouteDHCP, 1, []ustack.Route{{To: pfx("0.0.0.0/0"), Via: ip("192.168.1.254")}})
	rt.ForgetNIC(1)
	if len(rt.Routes()) != 0 {
		t.Errorf("after ForgetNIC: %v", rt.Routes())
	}
}

// TestRouteTableAdoptsAddresses: a table created over a stack that already
// has addresses derives their connected routes.
func TestRouteTableAdoptsAddresses(t *testing.T) {
	s, err := ustack.NewNetstack()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close(); s.Wait() }()
	if err := ustack.AddInterface(s, 1, "ch0", channel.New(4, 1500, "\x02\x00\x00\x00\x00\x01"), []netip.Prefix{pfx("10.5.0.1/24")}); err != nil {
		t.Fatal(err)
	}
	rt := ustack.NewRouteTable(s)
	rt.Set(ustack.RouteStatic, 0, []ustack.Route{{To: pfx("0.0.0.0/0"), Via: ip("10.5.0.254")}})
	if nic, hop, _ := nextHop(t, s, "9.9.9.9"); nic != 1 || hop != "10.5.0.254" {
		t.Errorf("got nic %d via %s, want 1 via 10.5.0.254; routes %v", nic, hop, rt.Routes())
	}
	if r, ok := rt.Lookup(ip("10.5.0.7")); !ok || r.Origin != ustack.RouteConnected {
		t.Errorf("Lookup(10.5.0.7): got %v %v, want the connected route", r, ok)
	}
}
