package appliance

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
	ustack "github.com/ulagg/ulagg/stack"
)

// VLAN interfaces in the reconciliation. A [[vlan]] with an ID and a
// parent runs as its own NIC over a lagg.VLAN on the parent lagg; one
// without (ifconfig vlanN create, or -vlanif) is configuration only. VLAN
// NICs are taken down in step 2, before any lagg is destroyed (at the
// commit), and made in step 4 once their parent exists, before routes and
// services, which may name them. A VLAN whose ID or parent changes gets a
// new NIC; a service bound to it is restarted. Its addresses go through
// the same code as a lagg's (addAddressLocked, removeAddressLocked), with
// an iface standing for the VLAN's NIC.

// vlanNIC is a running VLAN interface.
type vlanNIC struct {
	cfg config.VLAN // as running: ID, parent and addresses
	v   *lagg.VLAN
	// i is the VLAN's NIC for the address code shared with laggs: its
	// name is the VLAN's, its lagg the parent's.
	i      *iface
	parent *iface
}

// vlanPlan is what a reconciliation does to VLAN NICs, applied to
// Appliance.vlans at the commit.
type vlanPlan struct {
	removed   map[string]bool     // NICs taken down in step 2
	created   map[string]*vlanNIC // NICs made in step 4
	recreated map[string]bool     // names whose NIC is new: services bound to them restart
}

// pubVLAN is a running VLAN as status readers see it.
type pubVLAN struct {
	v   *lagg.VLAN
	nic tcpip.NICID
}

// vlanRuns reports whether running VLAN vn stays as it is in next (its
// NIC is kept; addresses may change).
//
// +checklocks:r.a.mu
func (r *reconcile) vlanRuns(vn *vlanNIC) bool {
	w := r.next.VLAN(vn.cfg.Name)
	if w == nil || !w.Attached() || w.ID != vn.cfg.ID || w.Parent != vn.cfg.Parent {
		return false
	}
	// A parent destroyed (or created anew) takes its VLANs with it.
	return r.a.ifaces[w.Parent] == vn.parent && r.next.Lagg(w.Parent) != nil
}

// releaseVLANs takes down the VLAN NICs that go or change, and removes the
// addresses that leave the ones that stay (step 2).
//
// +checklocks:r.a.mu
func (r *reconcile) releaseVLANs() error {
	r.vlans = vlanPlan{removed: map[string]bool{}, created: map[string]*vlanNIC{}, recreated: map[string]bool{}}
	for _, name := range slices.Sorted(maps.Keys(r.a.vlans)) {
		vn := r.a.vlans[name]
		if !r.vlanRuns(vn) {
			if err := r.a.removeVLANNICLocked(r.t, vn); err != nil {
				return err
			}
			r.vlans.removed[name] = true
			continue
		}
		w := r.next.VLAN(name)
		for _, p := range vn.cfg.Addresses {
			if !slices.ContainsFunc(w.Addresses, func(q netip.Prefix) bool { return q == p }) {
				if err := r.a.removeAddressLocked(r.t, vn.i, p); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
		}
	}
	return nil
}

// acquireVLANs makes the VLAN NICs that are new or changed and adds the
// addresses new to the ones that stay (step 4).
//
// +checklocks:r.a.mu
func (r *reconcile) acquireVLANs() error {
	for _, w := range r.next.VLANs {
		if !w.Attached() {
			continue
		}
		if vn := r.a.vlans[w.Name]; vn != nil && !r.vlans.removed[w.Name] {
			for _, p := range w.Addresses {
				if !slices.Contains(vn.cfg.Addresses, p) {
					if err := r.a.addAddressLocked(r.t, vn.i, p); err != nil {
						return fmt.Errorf("%s: %w", w.Name, err)
					}
					r.announce[vn.i] = true
				}
			}
			continue
		}
		parent := r.a.txnIface(r.t, w.Parent)
		if parent == nil {
			return fmt.Errorf("%s: vlanif %s: no such lagg", w.Name, w.Parent)
		}
		vn, err := r.a.createVLANNICLocked(r.t, w, parent)
		if err != nil {
			return err
		}
		for _, p := range w.Addresses {
			if err := r.a.addAddressLocked(r.t, vn.i, p); err != nil {
				return fmt.Errorf("%s: %w", w.Name, err)
			}
			r.announce[vn.i] = true
		}
		r.vlans.created[w.Name] = vn
		if r.a.vlans[w.Name] != nil {
			r.vlans.recreated[w.Name] = true
		}
	}
	return nil
}

// addVLANNICs adds the NICs the VLANs will have after this reconciliation
// to nics (for the services).
//
// +checklocks:r.a.mu
func (r *reconcile) addVLANNICs(nics map[string]tcpip.NICID) {
	for name, vn := range r.a.vlans {
		if !r.vlans.removed[name] {
			nics[name] = vn.i.nic
		}
	}
	for name, vn := range r.vlans.created {
		nics[name] = vn.i.nic
	}
}

// servicesRebound reports whether a service binds to a VLAN whose NIC this
// reconciliation replaced, and returns the services that do not.
func (r *reconcile) servicesRebound() ([]config.Service, bool) {
	var keep []config.Service
	rebound := false
	for _, s := range r.old.Services {
		if r.vlans.recreated[s.Lagg] || (r.vlans.removed[s.Lagg] && r.next.VLAN(s.Lagg) != nil) {
			rebound = true
			continue
		}
		keep = append(keep, s)
	}
	return keep, rebound
}

// commitVLANs records the VLAN NICs as they run now.
//
// +checklocks:r.a.mu
func (r *reconcile) commitVLANs() {
	for name := range r.vlans.removed {
		delete(r.a.vlans, name)
	}
	maps.Copy(r.a.vlans, r.vlans.created)
	for name, vn := range r.a.vlans {
		if w := r.next.VLAN(name); w != nil {
			vn.cfg = cloneVLAN(*w)
		}
		// A VLAN is down while its lagg is administratively down.
		if lc := r.next.Lagg(vn.cfg.Parent); lc != nil && lc.Down == r.a.s.CheckNIC(vn.i.nic) {
			var err tcpip.Error
			if lc.Down {
				err = r.a.s.DisableNIC(vn.i.nic)
			} else {
				err = r.a.s.EnableNIC(vn.i.nic)
			}
			if err != nil {
				r.a.log.Warn("vlan admin state", "vlan", name, "err", err)
			}
		}
	}
	r.a.publishVLANsLocked()
}

func cloneVLAN(v config.VLAN) config.VLAN {
	v.Addresses = slices.Clone(v.Addresses)
	return v
}

// createVLANNICLocked makes VLAN w on parent's lagg and its NIC, with no
// address; the undo log takes it down again.
//
// +checklocks:a.mu
func (a *Appliance) createVLANNICLocked(t *txn, w config.VLAN, parent *iface) (*vlanNIC, error) {
	v, err := parent.l.AddVLAN(w.ID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.Name, err)
	}
	nic := a.nextNIC
	// Through the SYN admission guard, as a lagg's NIC (synguard.go),
	// which also drops the SYNs it has no route back for (noroute.go).
	guard := newSYNGuard(v, a.syn)
	guard.back, guard.nic = a.noRoute, nic
	if err := ustack.AddInterface(a.s, nic, w.Name, guard, nil); err != nil {
		v.Close()
		return nil, fmt.Errorf("%s: %w", w.Name, err)
	}
	a.nextNIC++
	cfg := cloneVLAN(w)
	cfg.Addresses = nil
	vn := &vlanNIC{cfg: cfg, v: v, parent: parent,
		i: &iface{name: w.Name, l: parent.l, nic: nic, attached: map[string]config.Port{}, missing: map[string]*missingPort{}}}
	// Undo steps run under a.mu (undoLocked); checklocks cannot see into
	// the closure.
	t.onUndo(undoStep{kind: undoFunc, fn: func() error {
		a.closeVLANNICLocked(vn) // +checklocksignore
		return nil
	}})
	a.log.Info("vlan created", "vlan", w.Name, "vid", w.ID, "parent", w.Parent)
	return vn, nil
}

// removeVLANNICLocked takes running VLAN vn down; the undo log makes it
// again, with its addresses, in the same vlanNIC.
//
// +checklocks:a.mu
func (a *Appliance) removeVLANNICLocked(t *txn, vn *vlanNIC) error {
	a.closeVLANNICLocked(vn)
	t.onUndo(undoStep{kind: undoFunc, fn: func() error {
		return a.reopenVLANNICLocked(vn) // +checklocksignore: undo steps run under a.mu
	}})
	a.log.Info("vlan destroyed", "vlan", vn.cfg.Name)
	return nil
}

// reopenVLANNICLocked makes running VLAN vn's NIC again, as it was.
//
// +checklocks:a.mu
func (a *Appliance) reopenVLANNICLocked(vn *vlanNIC) error {
	v, err := vn.parent.l.AddVLAN(vn.cfg.ID)
	if err != nil {
		return fmt.Errorf("%s: put back: %w", vn.cfg.Name, err)
	}
	nic := a.nextNIC
	guard := newSYNGuard(v, a.syn)
	guard.back, guard.nic = a.noRoute, nic // noroute.go
	if err := ustack.AddInterface(a.s, nic, vn.cfg.Name, guard, nil); err != nil {
		v.Close()
		return fmt.Errorf("%s: put back: %w", vn.cfg.Name, err)
	}
	a.nextNIC++
	vn.v = v
	vn.i.nic = nic
	for _, p := range vn.cfg.Addresses {
		if err := a.routes.AddAddress(nic, p); err != nil {
			return fmt.Errorf("%s: put back %s: %w", vn.cfg.Name, p, err)
		}
	}
	a.publishVLANsLocked()
	return nil
}

// closeVLANNICLocked removes vn's NIC and takes the VLAN off its lagg.
//
// +checklocks:a.mu
func (a *Appliance) closeVLANNICLocked(vn *vlanNIC) {
	a.stopDHCPLocked(vn.cfg.Name) // releases the lease while the NIC is there (dhcp.go)
	if err := a.s.RemoveNIC(vn.i.nic); err != nil {
		a.log.Warn("remove NIC", "vlan", vn.cfg.Name, "err", err)
	}
	a.routes.ForgetNIC(vn.i.nic)
	vn.v.Close()
}

// closeVLANsLocked takes every VLAN NIC down (Close, before the laggs).
//
// +checklocks:a.mu
func (a *Appliance) closeVLANsLocked() {
	for name, vn := range a.vlans {
		a.closeVLANNICLocked(vn)
		delete(a.vlans, name)
	}
	a.publishVLANsLocked()
}

// publishVLANsLocked stores the running VLANs for status readers and
// tells each lagg's announcer which VLAN NICs to announce on.
//
// +checklocks:a.mu
func (a *Appliance) publishVLANsLocked() {
	m := make(map[string]pubVLAN, len(a.vlans))
	on := map[*iface][]tcpip.NICID{}
	for name, vn := range a.vlans {
		m[name] = pubVLAN{v: vn.v, nic: vn.i.nic}
		on[vn.parent] = append(on[vn.parent], vn.i.nic)
	}
	a.pubVLANs.Store(&m)
	for _, i := range a.ifaces {
		nics := on[i]
		i.vlanNICs.Store(&nics)
	}
}

// announceVLANs announces i's VLAN NICs' addresses: the lagg's announcer
// (a failover, a new MAC, the link up) concerns every VLAN on it too. It
// runs on the lagg's control goroutine, without a lock.
func (a *Appliance) announceVLANs(i *iface) {
	nics := i.vlanNICs.Load()
	if nics == nil {
		return
	}
	for _, nic := range *nics {
		if err := ustack.Announce(a.s, nic); err != nil {
			a.log.Debug("announce", "lagg", i.name, "nic", nic, "err", err)
		}
	}
}

// VLANNIC returns the NIC of VLAN name, or 0 when it does not run.
func (a *Appliance) VLANNIC(name string) tcpip.NICID {
	if m := a.pubVLANs.Load(); m != nil {
		return (*m)[name].nic
	}
	return 0
}
