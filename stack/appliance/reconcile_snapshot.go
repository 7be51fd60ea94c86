package appliance

import (
	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
)

// published is what status readers (Status, Config, Lagg, NIC: the control
// socket's status, the metrics and the http-status service) see: the
// configuration in force and, per lagg, the endpoint and the ports that
// are missing. It is immutable once stored in Appliance.pub, which the
// reconciliation replaces when it ends and port events replace when a port
// comes or goes; a lagg's own state (links, counters, LACP) is read live
// from the lagg, under the lagg's lock only. So a reader never waits for
// a reconciliation (which may hold Appliance.mu for as long as opening
// ports or stopping a service takes).
type published struct {
	cfg   *config.Config
	laggs map[string]pubLagg
}

type pubLagg struct {
	l       *lagg.Lagg
	nic     tcpip.NICID
	missing []MissingPort // in configuration order
}

// publishLocked stores what runs now for status readers.
//
// +checklocks:a.mu
func (a *Appliance) publishLocked() {
	p := &published{cfg: a.cfg.Clone(), laggs: make(map[string]pubLagg, len(a.ifaces))}
	for name, i := range a.ifaces {
		pl := pubLagg{l: i.l, nic: i.nic}
		if lc := a.cfg.Lagg(name); lc != nil {
			for _, cp := range lc.Ports {
				if m := i.missing[cp.Name]; m != nil {
					reason := ""
					if m.err != nil {
						reason = m.err.Error()
					}
					pl.missing = append(pl.missing, MissingPort{Port: cp, Reason: reason})
				}
			}
		}
		p.laggs[name] = pl
	}
	a.pub.Store(p)
}
