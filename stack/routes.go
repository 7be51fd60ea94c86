package stack

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// RouteOrigin says who asked for a route. Each origin replaces its own
// routes (RouteTable.Set) without touching the others'.
type RouteOrigin string

// Route origins.
const (
	RouteConnected RouteOrigin = "connected" // derived from an address, per address
	RouteStatic    RouteOrigin = "static"    // configured ([[route]], ulagg route add)
	RouteDHCP      RouteOrigin = "dhcp"      // learnt from a DHCP lease
	RouteRA        RouteOrigin = "ra"        // learnt from an IPv6 router advertisement
)

// rank orders origins whose routes otherwise tie: connected first.
func (o RouteOrigin) rank() int {
	switch o {
	case RouteConnected:
		return 0
	case RouteStatic:
		return 1
	case RouteDHCP:
		return 2
	case RouteRA:
		return 3
	}
	return 4
}

// Route is one row of a RouteTable.
type Route struct {
	To     netip.Prefix // destination; 0.0.0.0/0 or ::/0 is the default route
	Via    netip.Addr   // gateway; the zero Addr means on-link
	NIC    tcpip.NICID  // outgoing NIC; 0 = the NIC whose connected subnet holds Via
	Metric uint32       // lower wins among routes of the same prefix length
	Origin RouteOrigin
}

// String is route(8)-like: "10.0.0.0/8 via 192.168.1.254 nic 1 metric 0 (static)".
func (r Route) String() string {
	via := "on-link"
	if r.Via.IsValid() {
		via = "via " + r.Via.String()
	}
	return fmt.Sprintf("%s %s nic %d metric %d (%s)", r.To, via, r.NIC, r.Metric, r.Origin)
}

// routeSet names the routes one origin gave for one NIC (0: not bound).
type routeSet struct {
	origin RouteOrigin
	nic    tcpip.NICID
}

// RouteTable owns a gVisor stack's route table. gVisor has no metrics and
// picks the first matching row in table order, so every change rebuilds
// the whole table: longest prefix first, then lowest metric, then
// connected before static, DHCP and RA. Connected routes are derived from
// the addresses added through the table, one subnet route while any
// address needs it. A route via a gateway without a NIC goes out of the
// NIC whose connected subnet holds the gateway, re-resolved whenever
// addresses change; one that resolves nowhere waits in Unresolved.
//
// Once an embedder uses a RouteTable, routes added to the stack by other
// means are dropped at the next change.
type RouteTable struct {
	mu sync.Mutex
	// +checklocks:mu
	s *gstack.Stack // set once by NewRouteTable
	// +checklocks:mu
	sets map[routeSet][]Route
	// +checklocks:mu
	addrs map[tcpip.NICID][]netip.Prefix
	// +checklocks:mu
	installed []Route
	// +checklocks:mu
	unresolved []Route
	// +checklocks:mu
	onChange func(installed []Route)
}

// NewRouteTable takes over s's route table. Unicast addresses s already
// has, but link-local ones (gVisor routes those without the table), count
// as added through the table.
func NewRouteTable(s *gstack.Stack) *RouteTable {
	t := &RouteTable{s: s, sets: map[routeSet][]Route{}, addrs: map[tcpip.NICID][]netip.Prefix{}}
	t.mu.Lock()
	defer t.mu.Unlock()
	for nic, pas := range s.AllAddresses() {
		for _, pa := range pas {
			a, ok := netip.AddrFromSlice(pa.AddressWithPrefix.Address.AsSlice())
			// gVisor gives every IPv4 NIC 255.255.255.255/32 of its own.
			if !ok || a.IsLinkLocalUnicast() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				continue
			}
			t.addrs[nic] = append(t.addrs[nic], netip.PrefixFrom(a, pa.AddressWithPrefix.PrefixLen))
		}
	}
	t.installLocked()
	return t
}

// Set replaces origin's routes on nic (0: routes not bound to a NIC, which
// resolve by gateway) with routes and reinstalls the table. A route's NIC
// defaults to nic and its Origin is set to origin. Set(origin, nic, nil)
// removes them.
func (t *RouteTable) Set(origin RouteOrigin, nic tcpip.NICID, routes []Route) {
	rs := make([]Route, 0, len(routes))
	for _, r := range routes {
		r.Origin = origin
		if r.NIC == 0 {
			r.NIC = nic
		}
		r.To = r.To.Masked()
		r.Via = r.Via.Unmap()
		rs = append(rs, r)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	key := routeSet{origin, nic}
	if len(rs) == 0 {
		delete(t.sets, key)
	} else {
		t.sets[key] = rs
	}
	t.installLocked()
}

// AddAddress adds addr to NIC id with the connected route of its subnet.
func (t *RouteTable) AddAddress(id tcpip.NICID, addr netip.Prefix) error {
	addr = netip.PrefixFrom(addr.Addr().Unmap(), addr.Bits())
	t.mu.Lock()
	defer t.mu.Unlock()
	pa := ProtocolAddress(addr)
	if err := t.s.AddProtocolAddress(id, pa, gstack.AddressProperties{}); err != nil {
		return fmt.Errorf("add address %s: %s", addr, err)
	}
	t.addrs[id] = append(t.addrs[id], addr)
	t.installLocked()
	return nil
}

// RemoveAddress removes addr from NIC id; the connected route of its
// subnet goes with the last address that needs it.
func (t *RouteTable) RemoveAddress(id tcpip.NICID, addr netip.Prefix) error {
	addr = netip.PrefixFrom(addr.Addr().Unmap(), addr.Bits())
	t.mu.Lock()
	defer t.mu.Unlock()
	pa := ProtocolAddress(addr)
	if err := t.s.RemoveAddress(id, pa.AddressWithPrefix.Address); err != nil {
		return fmt.Errorf("remove address %s: %s", addr, err)
	}
	t.addrs[id] = slices.DeleteFunc(t.addrs[id], func(p netip.Prefix) bool { return p.Addr() == addr.Addr() })
	if len(t.addrs[id]) == 0 {
		delete(t.addrs, id)
	}
	t.installLocked()
	return nil
}

// ForgetNIC drops everything bound to NIC id (its addresses and every
// origin's routes on it); call it when the NIC is removed. Routes that
// resolved through it by gateway wait in Unresolved.
func (t *RouteTable) ForgetNIC(id tcpip.NICID) {
	if id == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.addrs, id)
	for k := range t.sets {
		if k.nic == id {
			delete(t.sets, k)
		}
	}
	t.installLocked()
}

// Refresh reinstalls the table, for callers that changed addresses or
// NICs behind the table's back.
func (t *RouteTable) Refresh() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.installLocked()
}

// SetOnChange has f called with the installed routes after every change
// (and once now), in table order. f runs with the table's lock held: it
// must not call the table.
func (t *RouteTable) SetOnChange(f func(installed []Route)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.onChange = f
	if f != nil {
		f(slices.Clone(t.installed))
	}
}

// Routes returns the installed routes in table order, each with its
// resolved NIC.
func (t *RouteTable) Routes() []Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.installed)
}

// Unresolved returns the routes that are not installed: their gateway is
// in no connected subnet, or they name neither a gateway nor a NIC.
func (t *RouteTable) Unresolved() []Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.unresolved)
}

// Lookup returns the installed route gVisor would pick for dst (ignoring
// NICs that are down), or false.
func (t *RouteTable) Lookup(dst netip.Addr) (Route, bool) {
	dst = dst.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.installed {
		if r.To.Contains(dst) {
			return r, true
		}
	}
	return Route{}, false
}

// installLocked rebuilds the route list and hands it to the stack.
//
// +checklocks:t.mu
func (t *RouteTable) installLocked() {
	var all, unresolved []Route
	for nic, addrs := range t.addrs {
		for _, a := range addrs {
			r := Route{To: a.Masked(), NIC: nic, Origin: RouteConnected}
			if !slices.Contains(all, r) {
				all = append(all, r)
			}
		}
	}
	for _, rs := range t.sets {
		for _, r := range rs {
			if !r.To.IsValid() || (r.Via.IsValid() && r.Via.Is4() != r.To.Addr().Is4()) {
				unresolved = append(unresolved, r)
				continue
			}
			if r.NIC == 0 {
				r.NIC = t.gatewayNICLocked(r.Via)
			}
			if r.NIC == 0 {
				unresolved = append(unresolved, r)
				continue
			}
			all = append(all, r)
		}
	}
	slices.SortFunc(all, compareRoutes)
	slices.SortFunc(unresolved, compareRoutes)
	table := make([]tcpip.Route, 0, len(all))
	for _, r := range all {
		tr := tcpip.Route{Destination: ProtocolAddress(r.To).AddressWithPrefix.Subnet(), NIC: r.NIC}
		if r.Via.IsValid() {
			tr.Gateway = tcpip.AddrFromSlice(r.Via.AsSlice())
		}
		table = append(table, tr)
	}
	t.s.SetRouteTable(table)
	t.installed, t.unresolved = all, unresolved
	if t.onChange != nil {
		t.onChange(slices.Clone(all))
	}
}

// gatewayNICLocked is the NIC whose connected subnet holds gw (the longest
// such prefix), or for an IPv6 link-local gateway the only NIC with IPv6
// addresses; 0 if none or ambiguous.
//
// +checklocks:t.mu
func (t *RouteTable) gatewayNICLocked(gw netip.Addr) tcpip.NICID {
	if !gw.IsValid() {
		return 0
	}
	var best tcpip.NICID
	bits := -1
	v6NICs := map[tcpip.NICID]bool{}
	for nic, addrs := range t.addrs {
		for _, a := range addrs {
			if a.Addr().Is6() {
				v6NICs[nic] = true
			}
			if a.Contains(gw) && (a.Bits() > bits || (a.Bits() == bits && nic < best)) {
				best, bits = nic, a.Bits()
			}
		}
	}
	if best == 0 && gw.Is6() && gw.IsLinkLocalUnicast() && len(v6NICs) == 1 {
		for nic := range v6NICs {
			best = nic
		}
	}
	return best
}

// compareRoutes is table order: longest prefix, lowest metric, connected
// first, then a stable order for display.
func compareRoutes(a, b Route) int {
	if c := cmp.Compare(b.To.Bits(), a.To.Bits()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Metric, b.Metric); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Origin.rank(), b.Origin.rank()); c != 0 {
		return c
	}
	if c := a.To.Addr().Compare(b.To.Addr()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.NIC, b.NIC); c != 0 {
		return c
	}
	return a.Via.Compare(b.Via)
}
