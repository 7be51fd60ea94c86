package integration

// IPv6 done right: the lagg answers NDP on the link-local address of its
// MAC, and the kernel keeps its own IPv6 off the ports while they are
// members (net.ipv6.conf.PORT.disable_ipv6 = 1), putting it back on leave,
// on a clean stop and, after kill -9, at the next start.

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
	ustack "github.com/ulagg/ulagg/stack"
	"github.com/ulagg/ulagg/stack/appliance"
)

// v6Sysctl reads (set == "") or writes net.ipv6.conf.DEV.disable_ipv6 in ns.
func v6Sysctl(t *testing.T, ns, dev, set string) string {
	t.Helper()
	path := "/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6"
	var got string
	err := lab.Do(ns, func() error {
		if set != "" {
			return os.WriteFile(path, []byte(set), 0)
		}
		b, err := os.ReadFile(path)
		got = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		t.Fatalf("%s in %s: %v", path, ns, err)
	}
	return got
}

// v6Ports reads every port's disable_ipv6.
func v6Ports(t *testing.T, tp *topo) []string {
	t.Helper()
	var out []string
	for _, p := range tp.ports {
		out = append(out, v6Sysctl(t, tp.lag, p, ""))
	}
	return out
}

func allAre(vs []string, v string) bool {
	for _, x := range vs {
		if x != v {
			return false
		}
	}
	return len(vs) > 0
}

// TestIPv6LinkLocalNDP: the kernel host pings the lagg's link-local
// address (fe80:: from its MAC, shown as NetBSD's ifconfig shows it) and
// learns it in its neighbour table with the lagg's MAC.
func TestIPv6LinkLocalNDP(t *testing.T) {
	tp := newTopo(t, 2)
	v6Sysctl(t, tp.host, tp.bridge, "0")
	ap := startAppliance(t, laggConfig(config.ProtoFailover, tp.ports...), appOptions{netns: tp.lag})
	st := ap.a.Status()[0]
	if !st.LinkLocal.IsValid() {
		t.Fatal("the lagg has no link-local address")
	}
	ll := st.LinkLocal.Addr()
	mac := st.MAC.String()
	// EUI-64 of the MAC: the universal/local bit flipped, ff:fe inserted.
	b := st.MAC
	want := fmt.Sprintf("fe80::%x:%x:%x:%x", uint16(b[0]^2)<<8|uint16(b[1]), uint16(b[2])<<8|0xff, 0xfe00|uint16(b[3]), uint16(b[4])<<8|uint16(b[5]))
	if ll.String() != want {
		t.Errorf("link-local %s, want %s (EUI-64 of %s)", ll, want, mac)
	}
	var text bytes.Buffer
	appliance.FormatStatus(&text, st, nil, appliance.FormatOptions{})
	if line := fmt.Sprintf("\tinet6 %s%%lagg0 prefixlen 64 scopeid 0x%x\n", ll, st.NIC); !strings.Contains(text.String(), line) {
		t.Errorf("status text lacks %q:\n%s", line, text.String())
	}
	// The host's own link-local address goes through DAD first: retry.
	var perr error
	if !testkit.Poll(10*time.Second, func() bool {
		perr = ping6(tp.host, tp.bridge, ll, time.Second)
		return perr == nil
	}) {
		t.Fatalf("ping %s%%%s from the kernel host: %v", ll, tp.bridge, perr)
	}
	neigh, err := lab.Output("ip", "-n", tp.host, "-6", "neigh", "show", "dev", tp.bridge)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(neigh, ll.String()+" lladdr "+mac) {
		t.Errorf("neighbour table of the kernel host lacks %s lladdr %s:\n%s", ll, mac, neigh)
	}
}

// TestIPv6DisabledOnPorts: disable_ipv6 is 1 on every port while it is a
// member and 0 again after it leaves and after a clean stop; a port whose
// IPv6 was off before stays off.
func TestIPv6DisabledOnPorts(t *testing.T) {
	tp := newTopo(t, 3)
	// lab turns IPv6 off everywhere; ports 0 and 1 have it on, as on a host.
	v6Sysctl(t, tp.lag, tp.ports[0], "0")
	v6Sysctl(t, tp.lag, tp.ports[1], "0")
	ap := startAppliance(t, laggConfig(config.ProtoFailover, tp.ports...), appOptions{netns: tp.lag})
	if got := v6Ports(t, tp); !allAre(got, "1") {
		t.Fatalf("disable_ipv6 of the member ports: %v, want all 1", got)
	}
	// Port 0 leaves.
	lc := *ap.a.Config().Lagg("lagg0")
	lc.Ports = lc.Ports[1:]
	if err := ap.a.ApplyLagg(lc); err != nil {
		t.Fatal(err)
	}
	if got := v6Sysctl(t, tp.lag, tp.ports[0], ""); got != "0" {
		t.Errorf("disable_ipv6 of %s after it left: %s, want 0", tp.ports[0], got)
	}
	if got := v6Sysctl(t, tp.lag, tp.ports[1], ""); got != "1" {
		t.Errorf("disable_ipv6 of %s, still a member: %s, want 1", tp.ports[1], got)
	}
	ap.a.Close()
	if got := v6Ports(t, tp); got[0] != "0" || got[1] != "0" || got[2] != "1" {
		t.Errorf("disable_ipv6 after stop: %v, want [0 0 1] (port 2's was off before)", got)
	}
}

// TestIPv6RestoredAfterCrash: ulagg killed with SIGKILL leaves the ports'
// IPv6 off, with state files saying so; the next start puts it back before
// taking the ports again, and its clean stop leaves it on.
func TestIPv6RestoredAfterCrash(t *testing.T) {
	tp := newTopo(t, 2)
	for _, p := range tp.ports {
		v6Sysctl(t, tp.lag, p, "0")
	}
	dir, file := crWrite(t, func(dir string) string { return crConfig(dir, 0, tp.ports...) })
	p1 := crStart(t, tp.lag, file)
	crWaitServing(t, tp, p1)
	if got := v6Ports(t, tp); !allAre(got, "1") {
		t.Fatalf("disable_ipv6 while running: %v, want all 1", got)
	}
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := p1.waitExit(t, 10*time.Second); !ok {
		t.Fatal("ulagg did not die of SIGKILL")
	}
	if got := v6Ports(t, tp); !allAre(got, "1") {
		t.Fatalf("disable_ipv6 after SIGKILL: %v, want all 1 (what the dead process left)", got)
	}
	if f := crStateFiles(t, dir); len(f) != len(tp.ports) {
		t.Errorf("state files after SIGKILL: %v, want one per port", f)
	}
	p2 := crStart(t, tp.lag, file)
	crWaitServing(t, tp, p2)
	if n := strings.Count(p2.out.String(), "disable_ipv6=1→0"); n != len(tp.ports) {
		t.Errorf("the second start put disable_ipv6 back %d times, want %d:\n%s", n, len(tp.ports), ifcTail(p2.out.String(), 4<<10))
	}
	if got := v6Ports(t, tp); !allAre(got, "1") {
		t.Errorf("disable_ipv6 under the second run: %v, want all 1", got)
	}
	p2.term(t, 2*time.Second)
	if got := v6Ports(t, tp); !allAre(got, "0") {
		t.Errorf("disable_ipv6 after the clean stop: %v, want all 0", got)
	}
	if f := crStateFiles(t, dir); len(f) != 0 {
		t.Errorf("state files left after the clean stop: %v", f)
	}
}

// ping6 sends one ICMPv6 echo request from namespace ns to dst on
// interface dev and waits up to timeout for the reply (no ping binary
// needed: a raw ICMPv6 socket, whose checksum the kernel fills in).
func ping6(ns, dev string, dst netip.Addr, timeout time.Duration) error {
	var c net.PacketConn
	if err := lab.Do(ns, func() error {
		var err error
		c, err = net.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	id := uint16(os.Getpid())
	req := []byte{128, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'u', 'l', 'a', 'g', 'g'}
	if _, err := c.WriteTo(req, &net.IPAddr{IP: dst.AsSlice(), Zone: dev}); err != nil {
		return err
	}
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		fa, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
		if n >= 8 && buf[0] == 129 && buf[4] == byte(id>>8) && buf[5] == byte(id) && fa.WithZone("") == dst {
			return nil
		}
	}
}

// TestSLAACDnsmasq: a lagg with "slaac" takes an address in the prefix
// dnsmasq advertises (EUI-64 of its MAC), an on-link route for it and a
// default route via the router's link-local address, answers the kernel
// host on that address, and gives all of it back when slaac is turned off.
func TestSLAACDnsmasq(t *testing.T) {
	requireDnsmasq(t)
	tp := newTopo(t, 2)
	v6Sysctl(t, tp.host, tp.bridge, "0")
	if err := lab.Run("ip", "-n", tp.host, "addr", "add", "2001:db8:231::1/64", "dev", tp.bridge, "nodad"); err != nil {
		t.Fatal(err)
	}
	// The router's link-local address must be usable before it advertises.
	if !testkit.Poll(5*time.Second, func() bool {
		out, err := lab.Output("ip", "-n", tp.host, "-6", "addr", "show", "dev", tp.bridge, "scope", "link")
		return err == nil && strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative")
	}) {
		t.Fatal("the bridge has no usable link-local address")
	}
	startDnsmasq(t, tp.host, tp.bridge, t.TempDir(), "--enable-ra", "--dhcp-range=2001:db8:231::,ra-only,64", "--ra-param="+tp.bridge+",4,300")
	lc := laggConfig(config.ProtoFailover, tp.ports...)
	lc.SLAAC = true
	ap := startAppliance(t, lc, appOptions{netns: tp.lag})

	st := ap.a.Status()[0]
	iid := st.LinkLocal.Addr().As16()
	want := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x02, 0x31, 8: iid[8], iid[9], iid[10], iid[11], iid[12], iid[13], iid[14], iid[15]})
	testkit.WaitFor(t, 15*time.Second, "a SLAAC address "+want.String(), func() bool {
		a := ap.a.Status()[0].Autoconf
		return len(a) == 1 && a[0] == netip.PrefixFrom(want, 64)
	})
	routerLL := ""
	if out, err := lab.Output("ip", "-n", tp.host, "-6", "addr", "show", "dev", tp.bridge, "scope", "link"); err == nil {
		for _, f := range strings.Fields(out) {
			if strings.HasPrefix(f, "fe80::") {
				routerLL = strings.TrimSuffix(f, "/64")
			}
		}
	}
	testkit.WaitFor(t, 5*time.Second, "ra routes", func() bool {
		installed, _ := ap.a.Routes()
		var def, onlink bool
		for _, r := range installed {
			def = def || r.Origin == ustack.RouteRA && r.To.Bits() == 0 && r.To.Addr().Is6() && r.Via.String() == routerLL
			onlink = onlink || r.Origin == ustack.RouteRA && r.To == netip.MustParsePrefix("2001:db8:231::/64") && !r.Via.IsValid()
		}
		return def && onlink
	})
	var perr error
	if !testkit.Poll(5*time.Second, func() bool { perr = ping6(tp.host, tp.bridge, want, time.Second); return perr == nil }) {
		t.Errorf("ping %s from the kernel host: %v", want, perr)
	}
	var text bytes.Buffer
	appliance.FormatStatus(&text, ap.a.Status()[0], nil, appliance.FormatOptions{})
	if line := "\tinet6 " + want.String() + "/64 flags 0x40<AUTOCONF>\n"; !strings.Contains(text.String(), line) {
		t.Errorf("status text lacks %q:\n%s", line, text.String())
	}

	lc.SLAAC = false
	if err := ap.a.ApplyLagg(lc); err != nil {
		t.Fatal(err)
	}
	if a := ap.a.Status()[0].Autoconf; len(a) != 0 {
		t.Errorf("autoconf addresses after slaac off: %v", a)
	}
	installed, _ := ap.a.Routes()
	for _, r := range installed {
		if r.Origin == ustack.RouteRA {
			t.Errorf("ra route left after slaac off: %v", r)
		}
	}
	for _, pa := range ap.a.Stack().AllAddresses()[ap.a.NIC("lagg0")] {
		if pa.AddressWithPrefix.Address.String() == want.String() {
			t.Errorf("the SLAAC address %s is still on the NIC", want)
		}
	}
}
