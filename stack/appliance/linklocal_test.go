package appliance_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/internal/testkit"
	ustack "github.com/ulagg/ulagg/stack"
)

// nicLinkLocals lists the fe80:: addresses of NIC nic.
func nicLinkLocals(r *ctlRig, nic tcpip.NICID) []netip.Addr {
	var out []netip.Addr
	for _, pa := range r.a.Stack().AllAddresses()[nic] {
		if a, ok := netip.AddrFromSlice(pa.AddressWithPrefix.Address.AsSlice()); ok && a.Is6() && a.IsLinkLocalUnicast() {
			out = append(out, a)
		}
	}
	return out
}

// TestApplianceLinkLocalFollowsMAC: a lagg's NIC, and a VLAN's on it, have
// the link-local address of the lagg's MAC, and only that one, also after
// the MAC changes.
func TestApplianceLinkLocalFollowsMAC(t *testing.T) {
	r := newCtlRig(t, "", "failover", "wm0", "wm1")
	r.mustIfconfig("lagg0 create", "lagg0 laggproto failover laggport wm0 laggport wm1 192.168.1.1/24",
		"vlan100 create vlan 100 vlanif lagg0 inet 10.1.0.1/24")
	r.waitRunning("lagg0", 5*time.Second)
	want := func(mac string) netip.Addr {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			t.Fatal(err)
		}
		ll, ok := ustack.LinkLocal(tcpip.LinkAddress(hw))
		if !ok {
			t.Fatalf("no link-local for %s", mac)
		}
		return ll.Addr()
	}
	check := func(mac string) {
		t.Helper()
		w := want(mac)
		nic, vnic := r.a.NIC("lagg0"), r.a.VLANNIC("vlan100")
		testkit.WaitFor(t, 5*time.Second, "link-local "+w.String()+" alone on lagg0 and vlan100", func() bool {
			l, v := nicLinkLocals(r, nic), nicLinkLocals(r, vnic)
			return len(l) == 1 && l[0] == w && len(v) == 1 && v[0] == w
		})
		if st := r.a.Status()[0]; st.LinkLocal.Addr() != w || st.LinkLocal.Bits() != 64 || st.NIC != nic {
			t.Errorf("status: link-local %s nic %d, want %s/64 nic %d", st.LinkLocal, st.NIC, w, nic)
		}
	}
	check(macOf(0)) // the first port's MAC
	lc := *r.a.Config().Lagg("lagg0")
	lc.MAC, _ = net.ParseMAC("02:00:00:00:77:01")
	if err := r.a.ApplyLagg(lc); err != nil {
		t.Fatal(err)
	}
	check("02:00:00:00:77:01")
}
