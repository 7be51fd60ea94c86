package appliance_test

import (
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
	"github.com/ulagg/ulagg/stack/dhcp"
)

const dhcpLeased = "192.168.1.50"

// peerDHCP is a DHCP server on the rig's peer stack: it offers and acks
// dhcpLeased for an hour, with the peer as router and MTU 1400, and
// records the message types it gets.
type peerDHCP struct {
	mu sync.Mutex
	// +checklocks:mu
	got []dhcpv4.MessageType

	leased, server net.IP
	conn           *gonet.UDPConn
	done           chan struct{}
}

func startPeerDHCP(t *testing.T, s *gstack.Stack) *peerDHCP {
	t.Helper()
	return startPeerDHCPOn(t, s, 1, dhcpLeased, peerAddr)
}

// startPeerDHCPOn serves leased from server on the peer's NIC nic.
func startPeerDHCPOn(t *testing.T, s *gstack.Stack, nic tcpip.NICID, leased, server string) *peerDHCP {
	t.Helper()
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		t.Fatal(terr)
	}
	ep.SocketOptions().SetBroadcast(true)
	if terr := ep.Bind(tcpip.FullAddress{NIC: nic, Port: dhcp.ServerPort}); terr != nil {
		t.Fatal(terr)
	}
	p := &peerDHCP{leased: net.ParseIP(leased).To4(), server: net.ParseIP(server).To4(), conn: gonet.NewUDPConn(&wq, ep), done: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() { p.conn.Close(); <-p.done })
	return p
}

func (p *peerDHCP) serve() {
	defer close(p.done)
	buf := make([]byte, 1500)
	peer := p.server
	for {
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		p.mu.Lock()
		p.got = append(p.got, req.MessageType())
		p.mu.Unlock()
		typ := dhcpv4.MessageTypeOffer
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
		case dhcpv4.MessageTypeRequest:
			typ = dhcpv4.MessageTypeAck
		default:
			continue
		}
		reply, err := dhcpv4.NewReplyFromRequest(req,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(p.leased),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(peer),
			dhcpv4.WithServerIP(peer),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(peer)),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Hour)),
			dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{1400 >> 8, 1400 & 0xff}),
		)
		if err != nil {
			continue
		}
		dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcp.ClientPort}
		if !req.ClientIPAddr.IsUnspecified() && !req.IsBroadcast() {
			dst.IP = req.ClientIPAddr
		}
		_, _ = p.conn.WriteTo(reply.ToBytes(), dst)
	}
}

func (p *peerDHCP) count(typ dhcpv4.MessageType) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, g := range p.got {
		if g == typ {
			n++
		}
	}
	return n
}

func hasDefaultVia(s *gstack.Stack, gw string) bool {
	return slices.ContainsFunc(s.GetRouteTable(), func(r tcpip.Route) bool {
		return r.Destination.Prefix() == 0 && r.Destination.ID().BitLen() == 32 && r.Gateway == tcpip.AddrFromSlice(net.ParseIP(gw).To4())
	})
}

func nicHas(s *gstack.Stack, addr string) bool {
	want := tcpip.AddrFromSlice(net.ParseIP(addr).To4())
	for _, pas := range s.AllAddresses() {
		for _, pa := range pas {
			if pa.AddressWithPrefix.Address == want {
				return true
			}
		}
	}
	return false
}

// TestApplianceDHCP: a lagg given `inet dhcp` gets a lease from a
// server on the far side, installs the address, the default route and the
// (smaller) MTU, shows the lease in text, JSON and metrics, keeps it across
// a failover, and releases it when dhcp is turned off.
func TestApplianceDHCP(t *testing.T) {
	r := newCtlRig(t, `
[[lagg]]
name = "lagg0"
proto = "failover"
`+wmPortsTOML, "failover", "wm0", "wm1")
	srv := startPeerDHCP(t, r.peer)
	// On once the server listens, so that the first DISCOVER gets an answer.
	r.mustIfconfig("lagg0 inet dhcp")
	if got := r.a.Config().Lagg("lagg0").DHCP; !got {
		t.Fatal("lagg0 inet dhcp: running configuration has no dhcp")
	}
	st := func() *appliance.DHCPStatus { return r.a.Status()[0].DHCP }
	testkit.WaitFor(t, 20*time.Second, "a DHCP lease", func() bool { s := st(); return s != nil && s.State == dhcp.Bound })
	s := r.a.Stack()
	if !nicHas(s, dhcpLeased) {
		t.Fatalf("the leased %s is not on the NIC: %v", dhcpLeased, s.AllAddresses())
	}
	if !hasDefaultVia(s, peerAddr) {
		t.Errorf("no default route via %s: %v", peerAddr, s.GetRouteTable())
	}
	if err := testkit.Ping(r.peer, netip.MustParseAddr(dhcpLeased), 5*time.Second); err != nil {
		t.Errorf("ping the leased address from the peer: %v", err)
	}
	if got := r.a.Lagg("lagg0").MTU(); got != 1400 {
		t.Errorf("lagg MTU %d, want 1400 from the lease", got)
	}
	text := r.status("lagg0", false)
	if !strings.Contains(text, "\tinet 192.168.1.50/24 broadcast 192.168.1.255 flags 0x0\n\tdhcp: bound") {
		t.Errorf("status does not show the leased address as an inet line:\n%s", text)
	}
	if !strings.Contains(text, "\tdhcp: bound 192.168.1.50/24 from 192.168.1.2 lease 3600s renew in 1800s router 192.168.1.2 mtu 1400\n") &&
		!strings.Contains(text, "\tdhcp: bound 192.168.1.50/24 from 192.168.1.2 lease 3600s renew in 1799s router 192.168.1.2 mtu 1400\n") {
		t.Errorf("status text lacks the dhcp line:\n%s", text)
	}
	if !strings.Contains(text, "\tinet6 fe80::") || !strings.Contains(text, "%lagg0 prefixlen 64 scopeid 0x1\n") {
		t.Errorf("status text lacks the link-local line:\n%s", text)
	}
	var js []map[string]json.RawMessage
	if err := json.Unmarshal(r.jsonStatus("lagg0", false), &js); err != nil || len(js) != 1 {
		t.Fatalf("JSON status: %v", err)
	}
	var dj appliance.DHCPJSON
	if err := json.Unmarshal(js[0]["dhcp"], &dj); err != nil {
		t.Fatalf("JSON dhcp %s: %v", js[0]["dhcp"], err)
	}
	if dj.State != "bound" || dj.Address != "192.168.1.50/24" || dj.Server != peerAddr || dj.Router != peerAddr || dj.LeaseS != 3600 || dj.MTU != 1400 || dj.Acquired != 1 {
		t.Errorf("JSON dhcp: got %+v", dj)
	}
	m, err := appliance.ListenMetrics(r.a, "127.0.0.1:0", r.log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f := scrape(t, m)
	if v := value(t, f, "ulagg_dhcp_state", "lagg=lagg0", "state=bound"); v != 1 {
		t.Errorf("ulagg_dhcp_state{state=bound} = %v, want 1", v)
	}
	if v := value(t, f, "ulagg_dhcp_lease_remaining_seconds", "lagg=lagg0"); v < 3500 || v > 3600 {
		t.Errorf("ulagg_dhcp_lease_remaining_seconds = %v, want about 3600", v)
	}

	// Failover: the lease stays (the lagg's MAC is the same on every port).
	r.wires["wm0"].SetLinkUp(false)
	testkit.WaitFor(t, 10*time.Second, "failover to wm1", func() bool { return r.a.Lagg("lagg0").Status().TxPort == "wm1" })
	if err := testkit.Ping(r.peer, netip.MustParseAddr(dhcpLeased), 5*time.Second); err != nil {
		t.Errorf("ping after failover: %v", err)
	}
	if s := st(); s.State != dhcp.Bound || s.Lease.Address.String() != "192.168.1.50/24" || s.Lost != 0 {
		t.Errorf("after failover: %+v, want the same lease bound", s)
	}

	// dhcp off: RELEASE, address, route and MTU gone.
	sub := r.a.Subscribe("lagg0", 0)
	defer sub.Close()
	r.mustIfconfig("lagg0 inet -dhcp")
	released := false
	for !released {
		select {
		case ev := <-sub.C():
			released = ev.Kind == appliance.EventDHCPPrefix+"released" && ev.Detail == "192.168.1.50/24 from 192.168.1.2 lease 3600s"
		case <-time.After(5 * time.Second):
			t.Fatal("no dhcp-released event for ulagg monitor")
		}
	}
	testkit.WaitFor(t, 5*time.Second, "DHCPRELEASE at the server", func() bool { return srv.count(dhcpv4.MessageTypeRelease) == 1 })
	if nicHas(s, dhcpLeased) || hasDefaultVia(s, peerAddr) {
		t.Errorf("after inet -dhcp: address %v or default route %v left", s.AllAddresses(), s.GetRouteTable())
	}
	if st() != nil {
		t.Errorf("status still has a DHCP client: %+v", st())
	}
	if got := r.a.Lagg("lagg0").MTU(); got != 1500 {
		t.Errorf("lagg MTU %d after the lease ended, want 1500 back", got)
	}
	if got := r.a.Config().Lagg("lagg0").DHCP; got {
		t.Error("running configuration still has dhcp")
	}
}

// TestApplianceDHCPOnVLAN: "dhcp" in a VLAN's addresses runs a client on
// the VLAN's NIC, shown in its status, released on vlanN inet -dhcp.
func TestApplianceDHCPOnVLAN(t *testing.T) {
	r := newCtlRig(t, "", "failover", "wm0", "wm1")
	r.mustIfconfig("lagg0 create", "lagg0 laggproto failover laggport wm0 laggport wm1 192.168.1.1/24")
	r.waitRunning("lagg0", 5*time.Second)
	r.peerVLAN(2, 100, "10.1.0.2/24")
	srv := startPeerDHCPOn(t, r.peer, 2, "10.1.0.60", "10.1.0.2")
	r.mustIfconfig("vlan100 create vlan 100 vlanif lagg0 inet dhcp")
	st := func() *appliance.DHCPStatus { return r.a.VLANStatus()[0].DHCP }
	testkit.WaitFor(t, 20*time.Second, "a lease on vlan100", func() bool { s := st(); return s != nil && s.State == dhcp.Bound })
	if got := st().Lease.Address.String(); got != "10.1.0.60/24" {
		t.Errorf("vlan100 lease %s, want 10.1.0.60/24", got)
	}
	if err := testkit.Ping(r.peer, netip.MustParseAddr("10.1.0.60"), 5*time.Second); err != nil {
		t.Errorf("ping the VLAN's leased address: %v", err)
	}
	if out := r.status("vlan100", false); !strings.Contains(out, "\tdhcp: bound 10.1.0.60/24 from 10.1.0.2 lease 3600s") {
		t.Errorf("vlan100 status lacks the dhcp line:\n%s", out)
	}
	if s := r.a.Status()[0].DHCP; s != nil {
		t.Errorf("lagg0 runs a DHCP client too: %+v", s)
	}
	r.mustIfconfig("vlan100 inet -dhcp")
	testkit.WaitFor(t, 5*time.Second, "DHCPRELEASE from vlan100", func() bool { return srv.count(dhcpv4.MessageTypeRelease) == 1 })
	if nicHas(r.a.Stack(), "10.1.0.60") {
		t.Error("the VLAN's leased address is still on a NIC")
	}
}
