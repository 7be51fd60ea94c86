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

// reconcileLocked moves what runs from a.cfg to next, which must be valid.
//
// +checklocks:a.mu
func (a *Appliance) reconcileLocked(next *config.Config, o reconcileOptions) (reconcileResult, error) {
	var res reconcileResult
	if a.closed {
		return res, errors.New("appliance is closed")
	}
	a.syncLocked()
	next = next.Clone()
	old := a.cfg
	changes := config.Diff(old, next)
	t := &txn{opened: map[string]linkep.Port{}, created: map[string]*iface{}}

	// Where each port is attached now, and what the old configuration has.
	owner := map[string]*iface{}
	for _, i := range a.ifaces {
		for n := range i.attached {
			owner[n] = i
		}
	}
	configured := map[string]bool{}
	for _, lc := range old.Laggs {
		for _, p := range lc.Ports {
			configured[p.Name] = true
		}
	}

	// Step 1: open, check, plan.
	var acquire []portPlan
	type reprio struct {
		i    *iface
		port config.Port
		old  uint16
	}
	var reprios []reprio
	missing := map[string]map[string]missingPlan{} // lagg -> port
	for li := range next.Laggs {
		w := &next.Laggs[li]
		i := a.ifaces[w.Name]
		missing[w.Name] = map[string]missingPlan{}
		mtu := a.targetMTU(old.Lagg(w.Name), w, i)
		for _, p := range w.Ports {
			if i != nil {
				if cur, ok := i.attached[p.Name]; ok && samePort(cur, p) {
					if cur.Priority != p.Priority {
						reprios = append(reprios, reprio{i, p, cur.Priority})
					}
					continue
				}
			}
			if owner[p.Name] != nil {
				// Attached elsewhere, or here as another kind: released
				// in step 2, opened again in step 4.
				acquire = append(acquire, portPlan{lagg: w.Name, port: p})
				continue
			}
			if i != nil && i.missing[p.Name] != nil && !o.retryMissing {
				missing[w.Name][p.Name] = missingPlan{p, i.missing[p.Name].err}
				continue
			}
			child, err := a.open(p, a.log)
			if err == nil {
				if err = preflightMTU(child, mtu); err != nil {
					child.Close()
				}
			}
			switch {
			case err == nil:
				t.opened[p.Name] = child
				acquire = append(acquire, portPlan{lagg: w.Name, port: p, child: child})
			case portMissing(err) && !o.refuseMissing && !(o.refuseNewMissing && !configured[p.Name]):
				missing[w.Name][p.Name] = missingPlan{p, err}
			default:
				if portMissing(err) {
					err = fmt.Errorf("the interface does not exist (`ip -br link` lists those that do): %w", err)
				}
				return a.failLocked(t, fmt.Errorf("%s: port %s: %w", w.Name, p.Name, err))
			}
		}
	}

	// Step 2: release ports and addresses, in every lagg.
	released := map[*iface][]string{}
	for _, lc := range old.Laggs {
		i := a.ifaces[lc.Name]
		if i == nil {
			continue
		}
		w := next.Lagg(lc.Name)
		for _, cp := range lc.Ports {
			cur, ok := i.attached[cp.Name]
			if !ok {
				continue
			}
			if w != nil {
				if np := findPort(w.Ports, cp.Name); np != nil && samePort(cur, *np) {
					continue
				}
			} else if !configuredIn(next, cp.Name) {
				continue // goes with its lagg at the commit
			}
			if err := a.removePortLocked(t, i, cur); err != nil {
				return a.failLocked(t, fmt.Errorf("%s: remove port %s: %w", lc.Name, cp.Name, err))
			}
			released[i] = append(released[i], cp.Name)
		}
	}
	for _, ch := range changes {
		if ch.Op != config.OpUpdateLagg {
			continue
		}
		i := a.ifaces[ch.Lagg]
		for _, it := range ch.Items {
			if it.Kind == config.ItemAddress && it.OldAddr.IsValid() {
				if err := a.removeAddressLocked(t, i, it.OldAddr); err != nil {
					return a.failLocked(t, fmt.Errorf("%s: %w", ch.Lagg, err))
				}
			}
		}
	}

	// Step 3: settings.
	for _, ch := range changes {
		if ch.Op != config.OpUpdateLagg || !slices.ContainsFunc(ch.Items, func(it config.Item) bool { return it.Kind == config.ItemSetting }) {
			continue
		}
		i := a.ifaces[ch.Lagg]
		want, err := laggConfig(*ch.New)
		if err != nil {
			return a.failLocked(t, err)
		}
		prev := i.l.Config()
		if err := i.l.Apply(want); err != nil {
			return a.failLocked(t, err)
		}
		t.onUndo(undoStep{kind: undoSettings, i: i, cfg: prev})
	}

	// Step 4: acquire.
	for _, ch := range changes {
		if ch.Op != config.OpAddLagg {
			continue
		}
		i, err := a.createIfaceLocked(*ch.New)
		if err != nil {
			return a.failLocked(t, err)
		}
		t.created[ch.Lagg] = i
		t.onUndo(undoStep{kind: undoCreate, i: i})
	}
	for _, pp := range acquire {
		i := a.txnIface(t, pp.lagg)
		child := pp.child
		if child == nil {
			var err error
			if child, err = a.open(pp.port, a.log); err != nil {
				return a.failLocked(t, fmt.Errorf("%s: port %s: %w", pp.lagg, pp.port.Name, err))
			}
		}
		delete(t.opened, pp.port.Name)
		if err := i.l.AddPort(child, pp.port.Priority); err != nil {
			child.Close()
			return a.failLocked(t, err)
		}
		t.onUndo(undoStep{kind: undoRemovePort, i: i, port: pp.port})
	}
	for _, r := range reprios {
		if err := r.i.l.SetPortPriority(r.port.Name, r.port.Priority); err != nil {
			return a.failLocked(t, err)
		}
		old := r.port
		old.Priority = r.old
		t.onUndo(undoStep{kind: undoPriority, i: r.i, port: old})
	}
	announce := map[*iface]bool{}
	for _, ch := range changes {
		if ch.Op == config.OpRemoveLagg {
			continue
		}
		i := a.txnIface(t, ch.Lagg)
		for _, it := range ch.Items {
			switch {
			case it.Kind == config.ItemAddress && it.NewAddr.IsValid():
				if err := a.addAddressLocked(t, i, it.NewAddr); err != nil {
					return a.failLocked(t, fmt.Errorf("%s: %w", ch.Lagg, err))
				}
				announce[i] = true
			case it.Kind == config.ItemAdmin && ch.Op == config.OpUpdateLagg:
				if err := a.setNICAdmin(i, ch.New.Down); err != nil {
					return a.failLocked(t, err)
				}
				t.onUndo(undoStep{kind: undoAdmin, i: i, down: ch.Old.Down})
			}
		}
	}
	if !config.ServicesEqual(old, next) {
		nics := map[string]tcpip.NICID{}
		for _, lc := range next.Laggs {
			nics[lc.Name] = a.txnIface(t, lc.Name).nic
		}
		if err := a.services.apply(next.Services, nics); err != nil {
			if rerr := a.services.apply(old.Services, a.nicsLocked()); rerr != nil {
				a.log.Error("cannot restart the services as they were", "err", rerr)
			}
			return a.failLocked(t, err)
		}
	}

	// Step 5: commit. Nothing fails from here on.
	for _, ch := range changes {
		if ch.Op == config.OpRemoveLagg {
			if i := a.ifaces[ch.Lagg]; i != nil {
				a.destroyIfaceLocked(i)
			}
		}
	}
	for name, i := range t.created {
		a.ifaces[name] = i
		a.log.Info("lagg created", "lagg", name, "proto", next.Lagg(name).Proto)
	}
	for i, names := range released {
		for _, n := range names {
			delete(i.attached, n)
		}
	}
	for _, pp := range acquire {
		a.txnIface(t, pp.lagg).attached[pp.port.Name] = pp.port
	}
	for _, r := range reprios {
		r.i.attached[r.port.Name] = r.port
	}
	for _, i := range a.ifaces {
		want := missing[i.name]
		for n, m := range i.missing {
			if mp, ok := want[n]; ok && samePort(m.port, mp.port) {
				m.port, m.err = mp.port, mp.err
				delete(want, n)
				continue
			}
			if pp := findPlan(acquire, i.name, n); pp != nil {
				res.Attached = append(res.Attached, fmt.Sprintf("%s: port %s attached: its interface exists now", i.name, n))
			}
			a.stopMissing(m)
			delete(i.missing, n)
		}
		for _, lc := range next.Lagg(i.name).Ports {
			if mp, ok := want[lc.Name]; ok {
				a.markMissingLocked(i, mp.port, mp.err)
			}
		}
	}
	a.cfg = next
	for i := range announce {
		if err := ustack.Announce(a.s, i.nic); err != nil {
			a.log.Debug("announce", "lagg", i.name, "err", err)
		}
	}
	a.publishLocked()
	res.Items = config.Items(old, next)
	for _, lc := range next.Laggs {
		i := a.ifaces[lc.Name]
		for _, p := range lc.Ports {
			if m := i.missing[p.Name]; m != nil {
				res.Missing = append(res.Missing, fmt.Sprintf("%s port %s: %v", lc.Name, p.Name, m.err))
			}
		}
	}
	return res, nil
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
		return ustack.AddAddress(a.s, i.nic, u.addr)
	case undoRemoveAddress:
		return ustack.RemoveAddress(a.s, i.nic, u.addr)
	case undoAdmin:
		return a.setNICAdmin(i, u.down)
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
	if err := ustack.RemoveAddress(a.s, i.nic, p); err != nil {
		return err
	}
	t.onUndo(undoStep{kind: undoAddAddress, i: i, addr: p})
	return nil
}

// +checklocks:a.mu
func (a *Appliance) addAddressLocked(t *txn, i *iface, p netip.Prefix) error {
	if err := ustack.AddAddress(a.s, i.nic, p); err != nil {
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
	if err := ustack.AddInterface(a.s, nic, lc.Name, l, nil); err != nil {
		l.Close()
		return nil, err
	}
	a.nextNIC++
	i := &iface{name: lc.Name, l: l, nic: nic, attached: map[string]config.Port{}, missing: map[string]*missingPort{}}
	l.SetAnnouncer(func() {
		if err := ustack.Announce(a.s, nic); err != nil {
			a.log.Debug("announce", "lagg", lc.Name, "err", err)
		}
	})
	l.SetEventHandler(func(ev lagg.Event) {
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
	for n, m := range i.missing {
		a.stopMissing(m)
		delete(i.missing, n)
	}
	if err := a.s.RemoveNIC(i.nic); err != nil {
		a.log.Warn("remove NIC", "lagg", i.name, "err", err)
	}
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
