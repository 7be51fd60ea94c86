package appliance

import (
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip"

	ustack "github.com/ulagg/ulagg/stack"
)

// Step 4, routes: after the addresses (a gateway resolves through the
// connected subnets) and before the services. The static routes of the
// configuration replace those installed as one set; a route naming an
// interface is bound to its NIC, one naming only a gateway goes out of
// the NIC whose subnet holds it (ustack.RouteTable). The lagg's NIC never
// changes while it lives, so routes survive failover untouched.

// applyRoutes installs next's static routes if they changed.
//
// +checklocks:r.a.mu
func (r *reconcile) applyRoutes() error {
	want := make([]ustack.Route, 0, len(r.next.Routes))
	for _, cr := range r.next.Routes {
		sr := ustack.Route{To: cr.To, Via: cr.Via, Metric: cr.Metric}
		if cr.Interface != "" {
			nic, ok := r.routeNIC(cr.Interface)
			if !ok {
				// A VLAN without ID or parent has no NIC yet.
				r.a.log.Warn("route waits: its interface is not running", "route", cr.String(), "interface", cr.Interface)
				continue
			}
			sr.NIC = nic
		}
		want = append(want, sr)
	}
	prev := r.a.static
	if slices.Equal(prev, want) {
		return nil
	}
	r.a.setStaticLocked(want)
	r.t.onUndo(undoStep{kind: undoRoutes, routes: prev})
	for _, u := range r.a.routes.Unresolved() {
		if u.Origin == ustack.RouteStatic {
			r.a.log.Warn("route waits: its gateway is in no subnet of any interface; installed once an address makes it reachable", "route", u.String())
		}
	}
	return nil
}

// routeNIC is the NIC interface name will have after this reconciliation:
// a lagg's, or a running VLAN's.
//
// +checklocks:r.a.mu
func (r *reconcile) routeNIC(name string) (tcpip.NICID, bool) {
	if i := r.a.txnIface(r.t, name); i != nil {
		return i.nic, true
	}
	if vn := r.vlans.created[name]; vn != nil {
		return vn.i.nic, true
	}
	if vn := r.a.vlans[name]; vn != nil && !r.vlans.removed[name] {
		return vn.i.nic, true
	}
	return 0, false
}

// setStaticLocked gives the route table the static routes rs.
//
// +checklocks:a.mu
func (a *Appliance) setStaticLocked(rs []ustack.Route) {
	a.static = rs
	a.routes.Set(ustack.RouteStatic, 0, rs)
}

// Routes returns the stack's route table: the installed routes in table
// order, then the routes waiting for their gateway to be reachable.
func (a *Appliance) Routes() (installed, waiting []ustack.Route) {
	return a.routes.Routes(), a.routes.Unresolved()
}

// RouteTable returns the appliance's route table, through which embedders
// (DHCP, router advertisements) install their routes by origin.
func (a *Appliance) RouteTable() *ustack.RouteTable { return a.routes }
