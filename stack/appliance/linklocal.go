package appliance

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip"

	ustack "github.com/ulagg/ulagg/stack"
)

// Each lagg's NIC has the IPv6 link-local address of the lagg's MAC
// (EUI-64), kept in step as the MAC follows the first port: after every
// reconciliation and on the lagg's port and configuration events. gVisor
// answers neighbour solicitations for it like any other address.

// syncLinkLocal gives NIC nic of interface name the link-local address of
// its MAC now. It takes no lock: it runs under Appliance.mu and on the
// lagg's event goroutine alike.
func (a *Appliance) syncLinkLocal(name string, nic tcpip.NICID) {
	if _, err := ustack.SyncLinkLocal(a.s, nic); err != nil {
		a.log.Debug("link-local address", "iface", name, "err", err)
	}
}

// syncLinkLocalsLocked syncs every lagg's and VLAN's NIC.
//
// +checklocks:a.mu
func (a *Appliance) syncLinkLocalsLocked() {
	for _, i := range a.ifaces {
		a.syncLinkLocal(i.name, i.nic)
	}
	for name, vn := range a.vlans {
		a.syncLinkLocal(name, vn.i.nic)
	}
}

// syncVLANLinkLocals syncs the running VLANs' NICs, whose MAC is their
// lagg's, from the published set: a lagg's event handler calls it, which
// must not wait for Appliance.mu.
func (a *Appliance) syncVLANLinkLocals() {
	if m := a.pubVLANs.Load(); m != nil {
		for name, v := range *m {
			if v.nic != 0 {
				a.syncLinkLocal(name, v.nic)
			}
		}
	}
}

// linkLocal returns the link-local address NIC nic has from its MAC, or
// the zero Prefix.
func (a *Appliance) linkLocal(nic tcpip.NICID) netip.Prefix {
	info, ok := a.s.NICInfo()[nic]
	if !ok {
		return netip.Prefix{}
	}
	ll, ok := ustack.LinkLocal(info.LinkAddress)
	if !ok {
		return netip.Prefix{}
	}
	want := ustack.ProtocolAddress(ll).AddressWithPrefix.Address
	for _, pa := range info.ProtocolAddresses {
		if pa.AddressWithPrefix.Address == want {
			return ll
		}
	}
	return netip.Prefix{}
}

// linkLocalString is ll with the interface as zone: fe80::1%lagg0/64.
func linkLocalString(ll netip.Prefix, iface string) string {
	return ll.Addr().WithZone(iface).String() + "/" + strconv.Itoa(ll.Bits())
}

// formatLinkLocal prints the link-local address as NetBSD's ifconfig does:
// "inet6 fe80::1%lagg0 prefixlen 64 scopeid 0x1".
func formatLinkLocal(b *strings.Builder, st LaggStatus) {
	if !st.LinkLocal.IsValid() {
		return
	}
	fmt.Fprintf(b, "\tinet6 %s prefixlen %d scopeid 0x%x\n", st.LinkLocal.Addr().WithZone(st.Name), st.LinkLocal.Bits(), st.NIC)
}
