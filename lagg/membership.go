package lagg

import (
	"fmt"
	"slices"
	"sync"

	"github.com/ulagg/ulagg/linkep"
)

// portOwners maps a port's identity to the lagg holding it, across all laggs
// of the process.
var portOwners struct {
	sync.Mutex
	// +checklocks:Mutex
	m map[string]string
}

// portIdentity names the interface behind a port uniquely on the host: host
// ports add their network namespace to the name, so equal names in two
// namespaces are two ports.
func portIdentity(child linkep.Port) string {
	if id, ok := child.(interface{ Identity() string }); ok {
		return id.Identity()
	}
	return child.Name()
}

// claimPort registers child for lagg and returns its identity, which
// unclaimPort takes back (a closed port may no longer know its namespace).
func claimPort(child linkep.Port, lagg string) (string, error) {
	id, name := portIdentity(child), child.Name()
	portOwners.Lock()
	defer portOwners.Unlock()
	if portOwners.m == nil {
		portOwners.m = map[string]string{}
	}
	switch owner, ok := portOwners.m[id]; {
	case !ok:
		portOwners.m[id] = lagg
		return id, nil
	case owner == lagg:
		return "", fmt.Errorf("%s is already a port of %s", name, lagg)
	default:
		return "", fmt.Errorf("%s is a port of another lagg, %s", name, owner)
	}
}

func unclaimPort(id string) {
	portOwners.Lock()
	delete(portOwners.m, id)
	portOwners.Unlock()
}

// AddPort adds child with a priority (smaller is preferred). The port gets
// the lagg's MAC and MTU; the add fails if it cannot take the MTU. Once
// AddPort succeeds the lagg owns child and closes it when the port leaves;
// when AddPort fails, child is untouched and still the caller's.
func (l *Lagg) AddPort(child linkep.Port, priority uint16) error {
	name := child.Name()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("lagg %s is closed", l.name)
	}
	if len(l.ports) >= MaxPorts {
		return fmt.Errorf("lagg %s: cannot add %s: the lagg already has the maximum of %d ports", l.name, name, MaxPorts)
	}
	id, err := claimPort(child, l.name)
	if err != nil {
		return fmt.Errorf("lagg %s: cannot add %s: %w", l.name, name, err)
	}
	p := &port{
		l:        l,
		child:    child,
		name:     name,
		identity: id,
		prio:     priority,
		seq:      l.seq,
		origMAC:  child.LinkAddress(),
		origMTU:  child.MTU(),
	}
	for p.slot = 0; l.slots&(1<<p.slot) != 0; p.slot++ {
	}
	firstMTU := l.firstMTU
	if firstMTU == 0 {
		firstMTU = p.origMTU // the first port sets the derived MTU
	}
	mtu := l.mtu.Load()
	if l.cfg.MTU == 0 && l.firstMTU == 0 && firstMTU != 0 {
		mtu = firstMTU
	}
	if p.origMTU != mtu {
		if err := child.SetPortMTU(mtu); err != nil {
			unclaimPort(id)
			return fmt.Errorf("lagg %s: cannot add %s: it cannot take the lagg's MTU %d: %w", l.name, name, mtu, err)
		}
	}
	l.firstMTU = firstMTU
	l.seq++
	l.slots |= p.bit()
	l.mtu.Store(mtu)
	child.Join(l.name)
	if hl := uint32(child.MaxHeaderLength()); hl > l.maxHdr.Load() {
		l.maxHdr.Store(hl)
	}
	l.ports = append(l.ports, p)
	l.sortPortsLocked()
	macChanged := l.updateMACLocked() // NetBSD: the first port's MAC replaces the random one
	child.SetLinkAddress(l.mac)
	// Handler first, then the state: a change in between reaches the
	// handler, which waits for mu and finds the state it reports.
	child.SetEventHandler(func(ev linkep.Event) { l.portEvent(p, ev) })
	p.linkUp = child.LinkUp()
	p.active = p.linkUp
	p.disabled = l.admin.disabled[name]
	p.lastChange = l.clock.Now()
	if l.dispatcher != nil && !l.detached {
		child.Attach(p)
		p.attached = true
	}
	c := l.ctxLocked()
	if macChanged {
		l.proto.configChanged(c)
	}
	l.proto.portAdded(c, p)
	l.finishLocked(c)
	l.log.Info("port added", "port", name, "priority", priority, "link", upDown(p.linkUp), "mtu", mtu)
	l.emit(Event{Kind: EventPortAdded, Port: name, Up: p.linkUp})
	l.rebuildLocked()
	return nil
}

// RemovePort removes the port named name and gives it back its own MAC and
// MTU. It returns once the port is closed.
func (l *Lagg) RemovePort(name string) error {
	l.mu.Lock()
	p := l.portLocked(name)
	if p == nil {
		l.mu.Unlock()
		return fmt.Errorf("lagg %s: %s is not a port of this lagg", l.name, name)
	}
	l.leaveLocked(p)
	l.emit(Event{Kind: EventPortRemoved, Port: name})
	l.mu.Unlock()
	l.releasePort(p)
	return nil
}

// +checklocks:l.mu
func (l *Lagg) portLocked(name string) *port {
	for _, p := range l.ports {
		if p.name == name {
			return p
		}
	}
	return nil
}

// leaveLocked takes p out of the lagg's tables; releasePort finishes the
// job without the lock, since stopping a port waits for its receive
// goroutines.
//
// +checklocks:l.mu
func (l *Lagg) leaveLocked(p *port) {
	p.leaving = true
	if p.delay != nil {
		p.delay.Stop()
		p.delay = nil
	}
	l.ports = slices.DeleteFunc(l.ports, func(q *port) bool { return q == p })
	l.ctr.add(&p.ctr) // the lagg's totals keep what the port counted
	// What was zeroed of it (ZeroCounters) stays zeroed in the totals.
	l.admin.base.merge(p.base.ctr)
	if l.closed {
		return // Close tears the protocol down as a whole
	}
	c := l.ctxLocked()
	l.proto.portRemoved(c, p)
	if l.updateMACLocked() { // NetBSD: the next port's MAC, or the random one
		l.proto.configChanged(c)
	}
	l.finishLocked(c)
	l.log.Info("port removed", "port", p.name)
	l.rebuildLocked()
}

// releasePort stops p and restores what the lagg changed on it.
func (l *Lagg) releasePort(p *port) {
	p.child.SetEventHandler(nil)
	l.mu.Lock()
	attached := p.attached
	p.attached = false
	l.mu.Unlock()
	if attached {
		p.child.Attach(nil)
	}
	// Attach(nil) of the whole lagg may be detaching this port right now;
	// closing it under that detach is not allowed.
	l.detaching.Wait()
	p.closeTxQueue()
	p.child.Wait()
	p.child.SetLinkAddress(p.origMAC)
	if p.origMTU != 0 && p.child.MTU() != p.origMTU {
		if err := p.child.SetPortMTU(p.origMTU); err != nil {
			l.log.Warn("cannot restore the port's MTU", "port", p.name, "mtu", p.origMTU, "err", err)
		}
	}
	p.child.Leave()
	p.child.Close()
	unclaimPort(p.identity)
	l.mu.Lock()
	l.slots &^= p.bit()
	l.mu.Unlock()
}

// +checklocks:l.mu
func (l *Lagg) sortPortsLocked() {
	slices.SortStableFunc(l.ports, func(a, b *port) int {
		if a.prio != b.prio {
			return int(a.prio) - int(b.prio)
		}
		return int(a.seq - b.seq)
	})
}

// SetPortPriority changes a port's priority (smaller is preferred).
func (l *Lagg) SetPortPriority(name string, priority uint16) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.portLocked(name)
	if p == nil {
		return fmt.Errorf("lagg %s: %s is not a port of this lagg", l.name, name)
	}
	if p.prio == priority {
		return nil
	}
	p.prio = priority
	l.sortPortsLocked()
	l.portChangedLocked(p)
	return nil
}

// Ports returns the names of the ports in priority order.
func (l *Lagg) Ports() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, len(l.ports))
	for i, p := range l.ports {
		names[i] = p.name
	}
	return names
}

// portEvent handles an event from a port's own goroutine.
func (l *Lagg) portEvent(p *port, ev linkep.Event) {
	switch ev.Kind {
	case linkep.LinkChanged:
		l.mu.Lock()
		if !p.leaving && !l.closed {
			l.setLinkLocked(p, ev.Up)
		}
		l.mu.Unlock()
	case linkep.MTUChanged:
		l.log.Warn("a port's MTU was changed behind the lagg; the lagg's MTU was put back", "port", p.name, "seen", ev.MTU, "mtu", l.mtu.Load())
	case linkep.Gone:
		l.mu.Lock()
		if p.leaving || l.closed {
			l.mu.Unlock()
			return
		}
		l.leaveLocked(p)
		l.emit(Event{Kind: EventPortGone, Port: p.name})
		// Release on another goroutine: the event may come from the very
		// goroutine that releasing the port waits for.
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			l.releasePort(p)
		}()
	}
}

// +checklocks:l.mu
func (l *Lagg) setLinkLocked(p *port, up bool) {
	if p.linkUp == up {
		return
	}
	p.linkUp = up
	p.lastChange = l.clock.Now()
	if !up {
		l.lossAt = p.lastChange
		p.linkFailures++
	}
	l.log.Info("port link changed", "port", p.name, "link", upDown(up))
	l.emit(Event{Kind: EventLink, Port: p.name, Up: up})
	l.settleLocked(p, l.cfg.DownDelay) // monitor_run.go: link and link monitor
}

// +checklocks:l.mu
func (l *Lagg) setActiveLocked(p *port, active bool) {
	if p.active == active {
		return
	}
	p.active = active
	l.portChangedLocked(p)
}

// +checklocks:l.mu
func (l *Lagg) portChangedLocked(p *port) {
	c := l.ctxLocked()
	l.proto.portChanged(c, p)
	l.finishLocked(c)
	l.rebuildLocked()
}
