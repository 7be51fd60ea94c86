package lagg

import (
	"fmt"
	"maps"
	"slices"

	"github.com/ulagg/ulagg/linkep"
)

// Operator controls that are neither settings nor membership: ports
// disabled by hand, and counters zeroed (ifconfig -z).

// adminState is guarded by Lagg.mu.
type adminState struct {
	// disabled names the ports the operator disabled, by name, so that the
	// flag holds for a port that is missing now and joins later.
	disabled map[string]bool
	// base is the lagg's own counters (those of departed ports) as
	// ZeroCounters found them.
	base Counters
}

// portBaseline is a port's counters as ZeroCounters found them: status
// shows the counts since. The data path's atomics are never written.
type portBaseline struct {
	ctr         Counters
	kernelDrops uint64
}

// usable reports whether the protocol may use p: its link counts as up
// (after the up/down delays) and the operator has not disabled it. Every
// input that takes a port out of service belongs here.
func (p *port) usable() bool { return p.active && !p.disabled }

// SetPortDisabled disables (or enables again) the port called name without
// removing it: a disabled port neither transmits nor receives, as if its
// link were down (LACP: it leaves the aggregation), and status shows it as
// disabled. The setting is kept by name, so name need not be a port yet:
// it joins disabled.
func (l *Lagg) SetPortDisabled(name string, disabled bool) error {
	if name == "" {
		return fmt.Errorf("lagg %s: SetPortDisabled: no port name", l.name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setDisabledLocked(name, disabled)
	return nil
}

// SetDisabledPorts makes names exactly the set of disabled ports, enabling
// every other one: the configuration's view, applied at each reconcile.
func (l *Lagg) SetDisabledPorts(names []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for n := range l.admin.disabled {
		if !slices.Contains(names, n) {
			l.setDisabledLocked(n, false)
		}
	}
	for _, n := range names {
		l.setDisabledLocked(n, true)
	}
}

// DisabledPorts returns the names of the disabled ports, sorted.
func (l *Lagg) DisabledPorts() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.admin.disabled))
}

// +checklocks:l.mu
func (l *Lagg) setDisabledLocked(name string, disabled bool) {
	if l.admin.disabled[name] == disabled {
		return
	}
	if disabled {
		if l.admin.disabled == nil {
			l.admin.disabled = map[string]bool{}
		}
		l.admin.disabled[name] = true
	} else {
		delete(l.admin.disabled, name)
	}
	p := l.portLocked(name)
	if p == nil || p.leaving || p.disabled == disabled {
		return
	}
	p.disabled = disabled
	state := "enabled"
	if disabled {
		state = "disabled"
	}
	l.log.Info("port "+state+" by the operator", "port", name)
	l.emit(Event{Kind: EventConfig, Port: name, Detail: "port " + name + " " + state})
	l.portChangedLocked(p)
}

// ZeroCounters makes every counter the lagg and its ports show start from
// zero again (NetBSD's ifconfig -z). Only a baseline is recorded: the
// per-frame counters stay monotonic atomics.
func (l *Lagg) ZeroCounters() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.admin.base = l.ctr.snapshot()
	for _, p := range l.ports {
		p.base.ctr = p.ctr.snapshot()
		p.base.kernelDrops = p.kernelDrops()
	}
}

// kernelDrops is the child's count of frames the kernel dropped, or 0.
func (p *port) kernelDrops() uint64 {
	if kd, ok := p.child.(linkep.KernelDropper); ok {
		return kd.KernelDrops()
	}
	return 0
}

// since returns c less base, each count floored at zero.
func (c Counters) since(base Counters) Counters {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	out := Counters{
		RxFrames: sub(c.RxFrames, base.RxFrames), RxBytes: sub(c.RxBytes, base.RxBytes),
		TxFrames: sub(c.TxFrames, base.TxFrames), TxBytes: sub(c.TxBytes, base.TxBytes),
		TxWaits: sub(c.TxWaits, base.TxWaits),
	}
	for k, v := range c.Drops {
		if n := sub(v, base.Drops[k]); n != 0 {
			if out.Drops == nil {
				out.Drops = make(map[string]uint64)
			}
			out.Drops[k] = n
		}
	}
	return out
}
