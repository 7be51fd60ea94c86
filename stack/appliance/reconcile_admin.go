package appliance

import "github.com/ulagg/ulagg/config"

// syncDisabledLocked gives every lagg of cfg that runs (or that t created)
// the disabled ports cfg names, enabling the others. The lagg keeps the
// flag by port name, so it holds for ports that join later, missing ones
// included. It cannot fail: a reconciliation sets it for next before it
// adds ports (they join disabled) and back for the old configuration when
// it rolls back.
//
// +checklocks:a.mu
func (a *Appliance) syncDisabledLocked(cfg *config.Config, t *txn) {
	for li := range cfg.Laggs {
		lc := &cfg.Laggs[li]
		i := a.ifaces[lc.Name]
		if t != nil {
			i = a.txnIface(t, lc.Name)
		}
		if i != nil {
			i.l.SetDisabledPorts(lc.DisabledPorts())
		}
	}
}
