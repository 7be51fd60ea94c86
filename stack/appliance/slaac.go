package appliance

import (
	"net/netip"
	"slices"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"

	ustack "github.com/ulagg/ulagg/stack"
)

// SLAAC on the laggs whose addresses say "slaac": gVisor's NDP handles
// their router advertisements (ustack.EnableSLAAC) and generates the
// addresses; the appliance's RAWatcher hands over the default routers and
// on-link prefixes, which become routes of origin ra. Turning it off, or
// the lagg going, takes the addresses and routes away.

// slaacNICs are the NICs with SLAAC on, by NIC. Its own lock: the
// watcher's callback takes it, and must not wait for Appliance.mu.
type slaacNICs struct {
	mu sync.Mutex
	// +checklocks:mu
	on map[tcpip.NICID]string // the interface's name
}

// syncSLAACLocked turns SLAAC on for the laggs a.cfg asks it for, and off
// for the others that have it.
//
// +checklocks:a.mu
func (a *Appliance) syncSLAACLocked() {
	want := map[tcpip.NICID]string{}
	for _, lc := range a.cfg.Laggs {
		if i := a.ifaces[lc.Name]; lc.SLAAC && i != nil {
			want[i.nic] = lc.Name
		}
	}
	a.slaac.mu.Lock()
	var off []tcpip.NICID
	for nic := range a.slaac.on {
		if _, ok := want[nic]; !ok {
			off = append(off, nic)
		}
	}
	a.slaac.mu.Unlock()
	for _, nic := range off {
		a.stopSLAAC(nic)
	}
	for nic, name := range want {
		a.slaac.mu.Lock()
		_, running := a.slaac.on[nic]
		if !running {
			if a.slaac.on == nil {
				a.slaac.on = map[tcpip.NICID]string{}
			}
			a.slaac.on[nic] = name
		}
		a.slaac.mu.Unlock()
		if running {
			continue
		}
		if err := ustack.EnableSLAAC(a.s, nic, true); err != nil {
			a.log.Warn("SLAAC not started", "iface", name, "err", err)
			continue
		}
		a.log.Info("SLAAC started: soliciting routers", "iface", name)
	}
}

// stopSLAAC turns SLAAC off on nic (if its NIC still exists) and removes
// what it brought: the generated addresses and the ra routes.
func (a *Appliance) stopSLAAC(nic tcpip.NICID) {
	a.slaac.mu.Lock()
	defer a.slaac.mu.Unlock()
	name, ok := a.slaac.on[nic]
	if !ok {
		return
	}
	delete(a.slaac.on, nic)
	if _, exists := a.s.NICInfo()[nic]; exists {
		if err := ustack.EnableSLAAC(a.s, nic, false); err != nil {
			a.log.Warn("SLAAC not stopped", "iface", name, "err", err)
		}
		for _, p := range a.ra.Info(nic).Addresses {
			if err := a.s.RemoveAddress(nic, ustack.ProtocolAddress(p).AddressWithPrefix.Address); err != nil {
				a.log.Debug("remove SLAAC address", "iface", name, "address", p, "err", err)
			}
		}
	}
	a.routes.Set(ustack.RouteRA, nic, nil)
	a.ra.Forget(nic)
	a.log.Info("SLAAC stopped", "iface", name)
}

// raChanged installs what router advertisements taught nic: a default
// route via each router, an on-link route per prefix. It runs on the
// watcher's goroutine.
func (a *Appliance) raChanged(nic tcpip.NICID, info ustack.RAInfo) {
	a.slaac.mu.Lock()
	defer a.slaac.mu.Unlock()
	name, ok := a.slaac.on[nic]
	if !ok {
		return // turned off meanwhile
	}
	var routes []ustack.Route
	for _, r := range info.Routers {
		routes = append(routes, ustack.Route{To: netip.PrefixFrom(netip.IPv6Unspecified(), 0), Via: r})
	}
	for _, p := range info.Prefixes {
		routes = append(routes, ustack.Route{To: p})
	}
	a.routes.Set(ustack.RouteRA, nic, routes)
	a.log.Info("router advertisement", "iface", name, "routers", info.Routers, "prefixes", info.Prefixes, "addresses", info.Addresses)
}

// slaacAddresses returns the addresses SLAAC gave nic, nil if it has none
// or SLAAC is off.
func (a *Appliance) slaacAddresses(nic tcpip.NICID) []netip.Prefix {
	a.slaac.mu.Lock()
	_, ok := a.slaac.on[nic]
	a.slaac.mu.Unlock()
	if !ok {
		return nil
	}
	out := a.ra.Info(nic).Addresses
	slices.SortFunc(out, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	return out
}
