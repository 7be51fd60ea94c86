package appliance

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	ustack "github.com/ulagg/ulagg/stack"
)

// The one reconciliation. Startup, `ulagg ifconfig`, reload and SIGHUP all
// compute a desired configuration and call reconcileLocked, which moves
// what runs there using config.Diff, all or nothing:
//
//  1. Open every port that is not attached anywhere yet and check that it
//     takes its lagg's MTU. A port that cannot be opened refuses the whole
//     change here, before anything running is touched — unless its
//     interface is missing and the caller accepts that: it is then kept
//     configured as missing, attached when it appears (reconcile_ports.go).
//  2. Release what leaves, in every lagg, before any lagg acquires: ports
//     (a port moving from lagg1 to lagg0 leaves lagg1 first) and addresses.
//  3. Apply changed settings, one lagg.Apply per lagg (itself all or
//     nothing), after the ports that leave have left, so that a leaving
//     port cannot refuse the new MTU.
//  4. Create new laggs, add ports (those moving are opened now), change
//     priorities, add addresses, set the admin state; then the services.
//  5. Commit: destroy removed laggs, record the new state, publish it for
//     status readers.
//
// Each step that changes something running records how to undo it; if a
// step fails, the undo log runs backwards and the error is returned, so a
// refused change leaves the appliance as it was. The words of an ifconfig
// line are applied in the user's order to the desired configuration (by
// config.IfconfigCommand.Apply), never to the running one.

// reconcileOptions say how a reconciliation treats ports whose interface
// is missing.
type reconcileOptions struct {
	// refuseNewMissing refuses a port new to the configuration whose
	// interface is missing (`ifconfig lagg0 laggport nosuch0`).
	refuseNewMissing bool
	// refuseMissing refuses every port that is opened and missing
	// (--strict).
	refuseMissing bool
	// retryMissing opens again the ports that are missing already (start
	// and reload); otherwise they keep waiting for their interface.
	retryMissing bool
}

// reconcileResult says what a reconciliation did.
type reconcileResult struct {
	Items    []config.Item // the configuration changes applied
	Attached []string      // missing ports attached because their interface exists now
	Missing  []string      // ports configured but missing after it: "lagg0 port p0: why"
}

// portPlan is a port to acquire.
type portPlan struct {
	lagg  string
	port  config.Port
	child linkep.Port // opened in step 1; nil: opened in step 4 (it moves)
}

// missingPlan is a port to keep as missing.
type missingPlan struct {
	port config.Port
	err  error
}

// txn is a reconciliation in progress: its undo log, the ports it opened
// and does not own yet, and the laggs it created.
type txn struct {
	undo    []undoStep
	opened  map[string]linkep.Port
	created map[string]*iface
}

// undoStep is how to undo one step; undoLocked runs it.
type undoStep struct {
	kind undoKind
	i    *iface
	port config.Port  // undoReAdd, undoRemovePort (Name), undoPriority (Name, Priority)
	cfg  lagg.Config  // undoSettings
	addr netip.Prefix // undoAddAddress, undoRemoveAddress
	down bool         // undoAdmin

	routes []ustack.Route // undoRoutes: the static routes to put back

	fn func() error // undoFunc
}

type undoKind int

const (
	undoReAdd         undoKind = iota + 1 // a port was removed: open it and add it again
	undoRemovePort                        // a port was added
	undoSettings                          // settings were applied
	undoCreate                            // a lagg was created
	undoPriority                          // a priority changed
	undoAddAddress                        // an address was removed
	undoRemoveAddress                     // an address was added
	undoAdmin                             // the admin state changed
	undoRoutes                            // the static routes changed (reconcile_routes.go)
	undoFunc                              // run fn (VLAN NICs, reconcile_vlans.go)
)

func (t *txn) onUndo(u undoStep) { t.undo = append(t.undo, u) }

// iface returns the lagg called name: just created, else running.
//
// +checklocks:a.mu
func (a *Appliance) txnIface(t *txn, name string) *iface {
	if i := t.created[name]; i != nil {
		return i
	}
	return a.ifaces[name]
}

// reconcile is one reconciliation: what it starts from, where it goes, the
// plan step 1 makes, and the txn whose undo log rolls it back.
type reconcile struct {
	a         *Appliance
	t         *txn
	o         reconcileOptions
	old, next *config.Config
	changes   []config.Change

	owner      map[string]*iface // port -> the lagg it is attached to now
	configured map[string]bool   // ports in the old configuration

	// The plan (step 1).
	attach  []portPlan
	reprios []reprioPlan
	missing map[string]map[string]missingPlan // lagg -> port

	released map[*iface][]string // ports removed in step 2
	announce map[*iface]bool     // laggs that got an address in step 4

	res reconcileResult

	vlans vlanPlan // reconcile_vlans.go
}

// reprioPlan is a port that stays attached with another priority.
type reprioPlan struct {
	i    *iface
	port config.Port
	old  uint16
}

// reconcileLocked moves what runs from a.cfg to next, which must be valid.
//
// +checklocks:a.mu
func (a *Appliance) reconcileLocked(next *config.Config, o reconcileOptions) (reconcileResult, error) {
	if a.closed {
		return reconcileResult{}, errors.New("appliance is closed")
	}
	a.syncLocked()
	r := a.newReconcileLocked(next.Clone(), o)
	// r.a is a, whose mu is held, but checklocks cannot follow a into r:
	// this one call is exempt, and every step is checked on r.a.mu.
	return r.run() // +checklocksignore
}

// run takes what runs to r.next all or nothing: the five steps in order, or
// the undo log backwards if one fails.
//
// +checklocks:r.a.mu
func (r *reconcile) run() (reconcileResult, error) {
	if err := r.plan(); err != nil {
		return r.rollback(err)
	}
	if err := r.release(); err != nil {
		return r.rollback(err)
	}
	if err := r.releaseVLANs(); err != nil { // reconcile_vlans.go
		return r.rollback(err)
	}
	if err := r.settings(); err != nil {
		return r.rollback(err)
	}
	r.a.syncDisabledLocked(r.next, r.t) // before acquire: new ports join disabled
	if err := r.acquire(); err != nil {
		return r.rollback(err)
	}
	r.commit()
	return r.res, nil
}

// newReconcileLocked starts a reconciliation from what runs now to next,
// recording where each port is attached and what the old configuration has.
//
// +checklocks:a.mu
func (a *Appliance) newReconcileLocked(next *config.Config, o reconcileOptions) *reconcile {
	old := a.cfg
	r := &reconcile{
		a:          a,
		t:          &txn{opened: map[string]linkep.Port{}, created: map[string]*iface{}},
		o:          o,
		old:        old,
		next:       next,
		changes:    config.Diff(old, next),
		owner:      map[string]*iface{},
		configured: map[string]bool{},
		missing:    map[string]map[string]missingPlan{},
		released:   map[*iface][]string{},
		announce:   map[*iface]bool{},
	}
	for _, i := range a.ifaces {
		for n := range i.attached {
			r.owner[n] = i
		}
	}
	for _, lc := range old.Laggs {
		for _, p := range lc.Ports {
			r.configured[p.Name] = true
		}
	}
	return r
}

// rollback undoes everything r did, closes the ports it opened, and returns err.
//
// +checklocks:r.a.mu
func (r *reconcile) rollback(err error) (reconcileResult, error) {
	res, err := r.a.failLocked(r.t, err)
	r.a.syncDisabledLocked(r.old, nil)
	r.a.syncDHCPLocked() // a client stopped with a NIC the undo put back restarts (dhcp.go)
	return res, err
}

// Step 1: open, check, plan.

// plan opens and checks every port to acquire that is attached nowhere, and changes nothing running.
//
// +checklocks:r.a.mu
func (r *reconcile) plan() error {
	for li := range r.next.Laggs {
		if err := r.planLagg(&r.next.Laggs[li]); err != nil {
			return err
		}
	}
	return nil
}

// planLagg sorts lagg w's ports into kept, reprioritised, to acquire and missing.
//
// +checklocks:r.a.mu
func (r *reconcile) planLagg(w *config.Lagg) error {
	i := r.a.ifaces[w.Name]
	r.missing[w.Name] = map[string]missingPlan{}
	mtu := r.a.targetMTU(r.old.Lagg(w.Name), w, i)
	for _, p := range w.Ports {
		if r.planKept(i, p) {
			continue
		}
		if r.owner[p.Name] != nil {
			// Attached elsewhere, or here as another kind: released
			// in step 2, opened again in step 4.
			r.attach = append(r.attach, portPlan{lagg: w.Name, port: p})
			continue
		}
		if i != nil && i.missing[p.Name] != nil && !r.o.retryMissing {
			r.missing[w.Name][p.Name] = missingPlan{p, i.missing[p.Name].err}
			continue
		}
		if err := r.planOpen(w.Name, p, mtu); err != nil {
			return err
		}
	}
	return nil
}

// planKept reports whether p stays attached to i as it is, planning its new priority if that changes.
func (r *reconcile) planKept(i *iface, p config.Port) bool {
	if i == nil {
		return false
	}
	cur, ok := i.attached[p.Name]
	if !ok || !samePort(cur, p) {
		return false
	}
	if cur.Priority != p.Priority {
		r.reprios = append(r.reprios, reprioPlan{i, p, cur.Priority})
	}
	return true
}

// planOpen opens p for lagg w and checks its MTU: it is then planned to be acquired, or kept missing, or the change is refused.
//
// +checklocks:r.a.mu
func (r *reconcile) planOpen(w string, p config.Port, mtu uint32) error {
	child, err := r.a.open(p, r.a.log)
	if err == nil {
		if err = preflightMTU(child, mtu); err != nil {
			child.Close()
		}
	}
	switch {
	case err == nil:
		r.t.opened[p.Name] = child
		r.attach = append(r.attach, portPlan{lagg: w, port: p, child: child})
	case portMissing(err) && !r.o.refuseMissing && !(r.o.refuseNewMissing && !r.configured[p.Name]):
		r.missing[w][p.Name] = missingPlan{p, err}
	default:
		if portMissing(err) {
			err = fmt.Errorf("the interface does not exist (`ip -br link` lists those that do): %w", err)
		}
		return fmt.Errorf("%s: port %s: %w", w, p.Name, err)
	}
	return nil
}

// Step 2: release ports and addresses, in every lagg.

// release takes out of every lagg the ports and addresses that leave it, before any lagg acquires.
//
// +checklocks:r.a.mu
func (r *reconcile) release() error {
	for _, lc := range r.old.Laggs {
		if err := r.releasePorts(lc); err != nil {
			return err
		}
	}
	return r.releaseAddresses()
}

// releasePorts removes from lc's lagg the attached ports that leave it or change kind.
//
// +checklocks:r.a.mu
func (r *reconcile) releasePorts(lc config.Lagg) error {
	i := r.a.ifaces[lc.Name]
	if i == nil {
		return nil
	}
	w := r.next.Lagg(lc.Name)
	for _, cp := range lc.Ports {
		cur, ok := i.attached[cp.Name]
		if !ok {
			continue
		}
		if w != nil {
			if np := findPort(w.Ports, cp.Name); np != nil && samePort(cur, *np) {
				continue
			}
		} else if !configuredIn(r.next, cp.Name) {
			continue // goes with its lagg at the commit
		}
		if err := r.a.removePortLocked(r.t, i, cur); err != nil {
			return fmt.Errorf("%s: remove port %s: %w", lc.Name, cp.Name, err)
		}
		r.released[i] = append(r.released[i], cp.Name)
	}
	return nil
}

// releaseAddresses removes the addresses that leave a lagg that stays.
//
// +checklocks:r.a.mu
func (r *reconcile) releaseAddresses() error {
	for _, ch := range r.changes {
		if ch.Op != config.OpUpdateLagg {
			continue
		}
		i := r.a.ifaces[ch.Lagg]
		for _, it := range ch.Items {
			if it.Kind == config.ItemAddress && it.OldAddr.IsValid() {
				if err := r.a.removeAddressLocked(r.t, i, it.OldAddr); err != nil {
					return fmt.Errorf("%s: %w", ch.Lagg, err)
				}
			}
		}
	}
	return nil
}

// Step 3: settings.

// settings applies each changed lagg's settings with one all-or-nothing lagg.Apply, after the leaving ports have left.
//
// +checklocks:r.a.mu
func (r *reconcile) settings() error {
	for _, ch := range r.changes {
		if ch.Op != config.OpUpdateLagg || !slices.ContainsFunc(ch.Items, func(it config.Item) bool { return it.Kind == config.ItemSetting }) {
			continue
		}
		i := r.a.ifaces[ch.Lagg]
		want, err := laggConfig(*ch.New)
		if err != nil {
			return err
		}
		prev := i.l.Config()
		if err := i.l.Apply(want); err != nil {
			return err
		}
		r.t.onUndo(undoStep{kind: undoSettings, i: i, cfg: prev})
	}
	return nil
}

// Step 4: acquire.

// acquire creates the new laggs, adds ports, priorities, addresses and admin states, then the services, each undoable.
//
// +checklocks:r.a.mu
func (r *reconcile) acquire() error {
	if err := r.createLaggs(); err != nil {
		return err
	}
	if err := r.addPorts(); err != nil {
		return err
	}
	if err := r.setPriorities(); err != nil {
		return err
	}
	if err := r.addAddresses(); err != nil {
		return err
	}
	if err := r.acquireVLANs(); err != nil { // reconcile_vlans.go
		return err
	}
	if err := r.applyRoutes(); err != nil {
		return err
	}
	return r.applyServices()
}

// createLaggs creates the new laggs, known to the txn only until the commit.
//
// +checklocks:r.a.mu
func (r *reconcile) createLaggs() error {
	for _, ch := range r.changes {
		if ch.Op != config.OpAddLagg {
			continue
		}
		i, err := r.a.createIfaceLocked(*ch.New)
		if err != nil {
			return err
		}
		r.t.created[ch.Lagg] = i
		r.t.onUndo(undoStep{kind: undoCreate, i: i})
	}
	return nil
}

// addPorts adds the planned ports to their laggs, opening now those that moved.
//
// +checklocks:r.a.mu
func (r *reconcile) addPorts() error {
	for _, pp := range r.attach {
		i := r.a.txnIface(r.t, pp.lagg)
		child := pp.child
		if child == nil {
			var err error
			if child, err = r.a.open(pp.port, r.a.log); err != nil {
				return fmt.Errorf("%s: port %s: %w", pp.lagg, pp.port.Name, err)
			}
		}
		delete(r.t.opened, pp.port.Name)
		if err := i.l.AddPort(child, pp.port.Priority); err != nil {
			child.Close()
			return err
		}
		r.t.onUndo(undoStep{kind: undoRemovePort, i: i, port: pp.port})
	}
	return nil
}

// setPriorities gives the ports that stay their new priorities.
func (r *reconcile) setPriorities() error {
	for _, rp := range r.reprios {
		if err := rp.i.l.SetPortPriority(rp.port.Name, rp.port.Priority); err != nil {
			return err
		}
		old := rp.port
		old.Priority = rp.old
		r.t.onUndo(undoStep{kind: undoPriority, i: rp.i, port: old})
	}
	return nil
}

// addAddresses adds the new addresses and sets the changed admin states, in the order of the changes.
//
// +checklocks:r.a.mu
func (r *reconcile) addAddresses() error {
	for _, ch := range r.changes {
		if ch.Op == config.OpRemoveLagg {
			continue
		}
		i := r.a.txnIface(r.t, ch.Lagg)
		for _, it := range ch.Items {
			switch {
			case it.Kind == config.ItemAddress && it.NewAddr.IsValid():
				if err := r.a.addAddressLocked(r.t, i, it.NewAddr); err != nil {
					return fmt.Errorf("%s: %w", ch.Lagg, err)
				}
				r.announce[i] = true
			case it.Kind == config.ItemAdmin && ch.Op == config.OpUpdateLagg:
				if err := r.a.setNICAdmin(i, ch.New.Down); err != nil {
					return err
				}
				r.t.onUndo(undoStep{kind: undoAdmin, i: i, down: ch.Old.Down})
			}
		}
	}
	return nil
}

// applyServices restarts the services if they changed; if that fails, it restarts them as they were.
//
// +checklocks:r.a.mu
func (r *reconcile) applyServices() error {
	keep, rebound := r.servicesRebound() // reconcile_vlans.go
	if config.ServicesEqual(r.old, r.next) && !rebound {
		return nil
	}
	nics := map[string]tcpip.NICID{}
	for _, lc := range r.next.Laggs {
		nics[lc.Name] = r.a.txnIface(r.t, lc.Name).nic
	}
	r.addVLANNICs(nics)
	if rebound { // stop those bound to a VLAN whose NIC is new; started again below
		if err := r.a.services.apply(keep, nics); err != nil {
			return err
		}
	}
	if err := r.a.services.apply(r.next.Services, nics); err != nil {
		if rerr := r.a.services.apply(r.old.Services, r.a.nicsLocked()); rerr != nil {
			r.a.log.Error("cannot restart the services as they were", "err", rerr)
		}
		return err
	}
	return nil
}

// Step 5: commit. Nothing fails from here on.

// commit records the new state and publishes it; it cannot fail.
//
// +checklocks:r.a.mu
func (r *reconcile) commit() {
	r.commitLaggs()
	r.commitPorts()
	r.commitVLANs() // reconcile_vlans.go
	for _, i := range r.a.ifaces {
		r.commitMissing(i)
	}
	r.a.cfg = r.next
	r.a.syncLinkLocalsLocked() // MACs may have changed (linklocal.go)
	r.a.syncDHCPLocked()       // dhcp.go
	r.a.syncSLAACLocked()      // slaac.go
	for i := range r.announce {
		if err := ustack.Announce(r.a.s, i.nic); err != nil {
			r.a.log.Debug("announce", "lagg", i.name, "err", err)
		}
	}
	r.a.publishLocked()
	r.res.Items = config.Items(r.old, r.next)
	r.reportMissing()
}

// commitLaggs destroys the removed laggs and makes the created ones run.
//
// +checklocks:r.a.mu
func (r *reconcile) commitLaggs() {
	for _, ch := range r.changes {
		if ch.Op == config.OpRemoveLagg {
			if i := r.a.ifaces[ch.Lagg]; i != nil {
				r.a.destroyIfaceLocked(i)
			}
		}
	}
	for name, i := range r.t.created {
		r.a.ifaces[name] = i
		r.a.log.Info("lagg created", "lagg", name, "proto", r.next.Lagg(name).Proto)
	}
}

// commitPorts records which ports each lagg has now: released, acquired and reprioritised.
//
// +checklocks:r.a.mu
func (r *reconcile) commitPorts() {
	for i, names := range r.released {
		for _, n := range names {
			delete(i.attached, n)
		}
	}
	for _, pp := range r.attach {
		r.a.txnIface(r.t, pp.lagg).attached[pp.port.Name] = pp.port
	}
	for _, rp := range r.reprios {
		rp.i.attached[rp.port.Name] = rp.port
	}
}

// commitMissing makes i's missing ports those planned: it keeps those that stay, stops waiting for the others and waits for the new ones.
//
// +checklocks:r.a.mu
func (r *reconcile) commitMissing(i *iface) {
	want := r.missing[i.name]
	for n, m := range i.missing {
		if mp, ok := want[n]; ok && samePort(m.port, mp.port) {
			m.port, m.err = mp.port, mp.err
			delete(want, n)
			continue
		}
		if pp := findPlan(r.attach, i.name, n); pp != nil {
			r.res.Attached = append(r.res.Attached, fmt.Sprintf("%s: port %s attached: its interface exists now", i.name, n))
		}
		r.a.stopMissing(m)
		delete(i.missing, n)
	}
	for _, lc := range r.next.Lagg(i.name).Ports {
		if mp, ok := want[lc.Name]; ok {
			r.a.markMissingLocked(i, mp.port, mp.err)
		}
	}
}

// reportMissing lists in the result, in configuration order, the ports configured but missing.
//
// +checklocks:r.a.mu
func (r *reconcile) reportMissing() {
	for _, lc := range r.next.Laggs {
		i := r.a.ifaces[lc.Name]
		for _, p := range lc.Ports {
			if m := i.missing[p.Name]; m != nil {
				r.res.Missing = append(r.res.Missing, fmt.Sprintf("%s port %s: %v", lc.Name, p.Name, m.err))
			}
		}
	}
}

// failLocked undoes what t did, closes the ports it opened, and returns
// err.
//
// +checklocks:a.mu
func (a *Appliance) failLocked(t *txn, err error) (reconcileResult, error) {
	for k := len(t.undo) - 1; k >= 0; k-- {
		if uerr := a.undoLocked(t, t.undo[k]); uerr != nil {
			a.log.Error("rolling back a refused change", "err", uerr)
		}
	}
	for _, c := range t.opened {
		c.Close()
	}
	// A port that could not be put back waits as missing.
	a.syncLocked()
	a.publishLocked()
	return reconcileResult{}, err
}

// undoLocked undoes one step.
//
// +checklocks:a.mu
func (a *Appliance) undoLocked(t *txn, u undoStep) error {
	i := u.i
	switch u.kind {
	case undoReAdd:
		child, err := a.open(u.port, a.log)
		if err != nil {
			return fmt.Errorf("%s: put back port %s: %w", i.name, u.port.Name, err)
		}
		if err := i.l.AddPort(child, u.port.Priority); err != nil {
			child.Close()
			return fmt.Errorf("%s: put back port %s: %w", i.name, u.port.Name, err)
		}
	case undoRemovePort:
		return i.l.RemovePort(u.port.Name)
	case undoSettings:
		return i.l.Apply(u.cfg)
	case undoCreate:
		delete(t.created, i.name)
		a.closeIfaceLocked(i)
	case undoPriority:
		return i.l.SetPortPriority(u.port.Name, u.port.Priority)
	case undoAddAddress:
		return a.routes.AddAddress(i.nic, u.addr)
	case undoRemoveAddress:
		return a.routes.RemoveAddress(i.nic, u.addr)
	case undoRoutes:
		a.setStaticLocked(u.routes)
	case undoAdmin:
		return a.setNICAdmin(i, u.down)
	case undoFunc:
		return u.fn()
	}
	return nil
}

// removePortLocked takes port p out of i's lagg.
//
// +checklocks:a.mu
func (a *Appliance) removePortLocked(t *txn, i *iface, p config.Port) error {
	if err := i.l.RemovePort(p.Name); err != nil {
		if slices.Contains(i.l.Ports(), p.Name) {
			return err
		}
		// It went on its own (its interface is gone) a moment ago.
	}
	t.onUndo(undoStep{kind: undoReAdd, i: i, port: p})
	return nil
}

// +checklocks:a.mu
func (a *Appliance) removeAddressLocked(t *txn, i *iface, p netip.Prefix) error {
	if err := a.routes.RemoveAddress(i.nic, p); err != nil {
		return err
	}
	t.onUndo(undoStep{kind: undoAddAddress, i: i, addr: p})
	return nil
}

// +checklocks:a.mu
func (a *Appliance) addAddressLocked(t *txn, i *iface, p netip.Prefix) error {
	if err := a.routes.AddAddress(i.nic, p); err != nil {
		return err
	}
	t.onUndo(undoStep{kind: undoRemoveAddress, i: i, addr: p})
	return nil
}

// targetMTU is the MTU a port joining lagg w must take, when known before
// anything changes: the configured one, else the lagg's derived MTU if it
// keeps it; 0 when the first port decides.
func (a *Appliance) targetMTU(old, w *config.Lagg, i *iface) uint32 {
	switch {
	case w.MTU != 0:
		return w.MTU
	case i != nil && old != nil && old.MTU == 0 && len(i.attached) > 0:
		return i.l.MTU()
	}
	return 0
}

// preflightMTU checks that a port not yet in a lagg takes mtu, and puts its
// own back: a refused change must refuse before a running port is touched.
func preflightMTU(child linkep.Port, mtu uint32) error {
	own := child.MTU()
	if mtu == 0 || own == mtu {
		return nil
	}
	if err := child.SetPortMTU(mtu); err != nil {
		return fmt.Errorf("it cannot take the lagg's MTU %d: %w", mtu, err)
	}
	if err := child.SetPortMTU(own); err != nil {
		return fmt.Errorf("cannot give it back its MTU %d: %w", own, err)
	}
	return nil
}

// samePort reports whether two configurations of a port open the same
// endpoint (the priority may differ).
func samePort(a, b config.Port) bool { return a.SameOpening(b) }

func configuredIn(c *config.Config, port string) bool {
	for _, l := range c.Laggs {
		if findPort(l.Ports, port) != nil {
			return true
		}
	}
	return false
}

func findPlan(ps []portPlan, lagg, port string) *portPlan {
	for k := range ps {
		if ps[k].lagg == lagg && ps[k].port.Name == port {
			return &ps[k]
		}
	}
	return nil
}

// createIfaceLocked makes a lagg with lc's settings and its NIC, down
// first if lc says so, with no port and no address: the reconciliation
// adds those.
//
// +checklocks:a.mu
func (a *Appliance) createIfaceLocked(lc config.Lagg) (*iface, error) {
	settings, err := laggConfig(lc)
	if err != nil {
		return nil, err
	}
	l, err := lagg.New(lagg.Options{Name: lc.Name, Config: settings, Logger: a.log})
	if err != nil {
		return nil, err
	}
	nic := a.nextNIC
	// The NIC sees the lagg through the SYN admission guard (synguard.go),
	// which also drops the SYNs it has no route back for (noroute.go).
	guard := newSYNGuard(l, a.syn)
	guard.back, guard.nic = a.noRoute, nic
	if err := ustack.AddInterface(a.s, nic, lc.Name, guard, nil); err != nil {
		l.Close()
		return nil, err
	}
	a.nextNIC++
	i := &iface{name: lc.Name, l: l, nic: nic, attached: map[string]config.Port{}, missing: map[string]*missingPort{}}
	l.SetAnnouncer(func() {
		if err := ustack.Announce(a.s, nic); err != nil {
			a.log.Debug("announce", "lagg", lc.Name, "err", err)
		}
		a.announceVLANs(i) // reconcile_vlans.go
	})
	l.SetEventHandler(func(ev lagg.Event) {
		a.laggEvent(ev) // to `ulagg monitor` (events.go)
		if ev.Kind == lagg.EventPortAdded || ev.Kind == lagg.EventPortRemoved || ev.Kind == lagg.EventConfig {
			a.syncLinkLocal(lc.Name, nic) // the MAC follows the first port (linklocal.go)
			a.syncVLANLinkLocals()
		}
		if ev.Kind == lagg.EventPortGone {
			a.post(portEvent{i: i, port: ev.Port, kind: evGone})
		}
	})
	// Down before any port or address: a lagg created down never carries
	// a frame.
	if lc.Down {
		if err := a.setNICAdmin(i, true); err != nil {
			a.closeIfaceLocked(i)
			return nil, err
		}
	}
	return i, nil
}

// closeIfaceLocked removes i's NIC and closes its lagg (its ports get their
// MAC and MTU back) and stops waiting for its missing ports.
//
// +checklocks:a.mu
func (a *Appliance) closeIfaceLocked(i *iface) {
	a.stopDHCPLocked(i.name) // releases the lease while the NIC is there (dhcp.go)
	a.stopSLAAC(i.nic)       // slaac.go
	for n, m := range i.missing {
		a.stopMissing(m)
		delete(i.missing, n)
	}
	if err := a.s.RemoveNIC(i.nic); err != nil {
		a.log.Warn("remove NIC", "lagg", i.name, "err", err)
	}
	a.routes.ForgetNIC(i.nic)
	i.l.Close()
}

// destroyIfaceLocked closes a running lagg and forgets it.
//
// +checklocks:a.mu
func (a *Appliance) destroyIfaceLocked(i *iface) {
	delete(a.ifaces, i.name)
	a.closeIfaceLocked(i)
	a.log.Info("lagg destroyed", "lagg", i.name)
}

// setNICAdmin brings i's NIC administratively up or down (gVisor's
// EnableNIC/DisableNIC).
func (a *Appliance) setNICAdmin(i *iface, down bool) error {
	if down {
		if err := a.s.DisableNIC(i.nic); err != nil {
			return fmt.Errorf("%s: disable NIC: %s", i.name, err)
		}
	} else if err := a.s.EnableNIC(i.nic); err != nil {
		return fmt.Errorf("%s: enable NIC: %s", i.name, err)
	}
	a.log.Info("lagg admin state", "lagg", i.name, "admin", upDownWord(!down))
	return nil
}

func upDownWord(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func findPort(ports []config.Port, name string) *config.Port {
	for k := range ports {
		if ports[k].Name == name {
			return &ports[k]
		}
	}
	return nil
}
