package appliance

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/linkep/host"
)

// Ports that come and go. A configured port whose interface is missing —
// at start, on reload, or because it disappeared under a running lagg
// (lagg.EventPortGone: `ip link del`, or the interface moved to another
// namespace) — stays in the configuration and in status (<MISSING>), and
// waits for its interface: a PortWatcher (by default rtnetlink RTM_NEWLINK
// by name, host.WatchAppear) says when it may have appeared, and the port
// is opened and added then. A failed attempt that is not "still missing"
// (the old port is still being released, the MTU is refused) is retried
// with backoff; kinds with no watcher are retried with backoff only.

// errGone is why a port that was attached is missing now.
type errGone struct{}

func (errGone) Error() string { return "its interface went away" }

// Retry backoff for missing ports.
const (
	retryFirst      = 100 * time.Millisecond
	retryMaxWatched = 10 * time.Second // the watcher says when to try again anyway
	retryMax        = 30 * time.Second // no watcher: retries are all there is
)

// missingPort is a configured port whose interface is missing, and how the
// appliance waits for it. Guarded by Appliance.mu.
type missingPort struct {
	port    config.Port
	err     error       // the last attempt's
	cancel  func()      // stops the watcher; nil without one
	retry   *time.Timer // a pending retry
	backoff time.Duration
}

// portMissing reports whether an error opening a port says that its
// interface does not exist.
func portMissing(err error) bool {
	return errors.Is(err, ErrPortMissing) || host.IsMissing(err)
}

// watchHostPort is the default PortWatcher: rtnetlink by name for the host
// kinds, in the appliance's own network namespace.
func watchHostPort(p config.Port, appeared func()) (func(), error) {
	switch p.Kind {
	case "afpacket", "tap":
		return host.WatchAppear("", p.Name, appeared)
	}
	return nil, fmt.Errorf("no watcher for ports of kind %s", p.Kind)
}

type portEventKind int

const (
	evGone     portEventKind = iota + 1 // the lagg lost the port (EventPortGone)
	evAppeared                          // the watcher saw the interface
	evRetry                             // a retry is due
)

// portEvent is handled on routineEvents with Appliance.mu held.
type portEvent struct {
	i    *iface
	port string
	kind portEventKind
}

// post queues ev without blocking: lagg event handlers, watchers and timers
// call it, and some of them are waited for by code that holds a.mu.
func (a *Appliance) post(ev portEvent) {
	a.evMu.Lock()
	a.evQ = append(a.evQ, ev)
	a.evMu.Unlock()
	select {
	case a.evKick <- struct{}{}:
	default:
	}
}

// syncEvery is how often the event goroutine checks that no lagg lost a
// port without the appliance hearing of it (a lagg drops events when its
// queue is full).
const syncEvery = 5 * time.Second

func (a *Appliance) routineEvents() {
	defer close(a.evDone)
	tick := time.NewTicker(syncEvery)
	defer tick.Stop()
	for {
		select {
		case <-a.evStop:
			return
		case <-tick.C:
			a.mu.Lock()
			if !a.closed && a.syncLocked() {
				a.publishLocked()
			}
			a.mu.Unlock()
			continue
		case <-a.evKick:
		}
		a.evMu.Lock()
		q := a.evQ
		a.evQ = nil
		a.evMu.Unlock()
		for _, ev := range q {
			a.mu.Lock()
			if !a.closed {
				a.handlePortEventLocked(ev)
			}
			a.mu.Unlock()
		}
	}
}

// +checklocks:a.mu
func (a *Appliance) handlePortEventLocked(ev portEvent) {
	i := ev.i
	if a.ifaces[i.name] != i {
		return // the lagg was destroyed since
	}
	switch ev.kind {
	case evGone:
		p, ok := i.attached[ev.port]
		if !ok || slices.Contains(i.l.Ports(), ev.port) {
			return // removed on purpose, or back already
		}
		delete(i.attached, ev.port)
		a.log.Warn("a port's interface is gone; the port stays configured and is attached again when the interface appears",
			"lagg", i.name, "port", ev.port)
		a.markMissingLocked(i, p, errGone{})
		a.publishLocked()
	case evAppeared, evRetry:
		m := i.missing[ev.port]
		if m == nil {
			return
		}
		if ev.kind == evRetry {
			m.retry = nil
		}
		a.tryAttachLocked(i, m)
	}
}

// tryAttachLocked opens a missing port and adds it to its lagg.
//
// +checklocks:a.mu
func (a *Appliance) tryAttachLocked(i *iface, m *missingPort) {
	child, err := a.open(m.port, a.log)
	if err == nil {
		if err = i.l.AddPort(child, m.port.Priority); err != nil {
			child.Close()
		}
	}
	if err != nil {
		m.err = err
		if !portMissing(err) {
			a.log.Warn("a missing port's interface is there but the port cannot be attached yet; retrying",
				"lagg", i.name, "port", m.port.Name, "err", err)
			a.retryLaterLocked(i, m)
		} else if m.cancel == nil {
			a.retryLaterLocked(i, m)
		}
		a.publishLocked()
		return
	}
	a.stopMissing(m)
	delete(i.missing, m.port.Name)
	i.attached[m.port.Name] = m.port
	a.log.Info("port attached: its interface appeared", "lagg", i.name, "port", m.port.Name)
	a.portEventNow(EventPortBack, i.name, m.port.Name, "its interface appeared")
	a.publishLocked()
}

// markMissingLocked records port p of i as missing and starts waiting for
// its interface (at once, if the watcher finds it there already).
//
// +checklocks:a.mu
func (a *Appliance) markMissingLocked(i *iface, p config.Port, why error) {
	m := &missingPort{port: p, err: why}
	i.missing[p.Name] = m
	a.portEventNow(EventPortMissing, i.name, p.Name, why.Error())
	name := p.Name
	cancel, err := a.watch(p, func() { a.post(portEvent{i: i, port: name, kind: evAppeared}) })
	if err != nil {
		a.log.Debug("no watcher for a missing port; retrying with backoff", "lagg", i.name, "port", name, "err", err)
		a.retryLaterLocked(i, m)
		return
	}
	m.cancel = cancel
}

// retryLaterLocked schedules another attempt, backing off.
//
// +checklocks:a.mu
func (a *Appliance) retryLaterLocked(i *iface, m *missingPort) {
	if m.retry != nil {
		return
	}
	limit := retryMax
	if m.cancel != nil {
		limit = retryMaxWatched
	}
	if m.backoff == 0 {
		m.backoff = retryFirst
	} else {
		m.backoff = min(2*m.backoff, limit)
	}
	name := m.port.Name
	m.retry = time.AfterFunc(m.backoff, func() { a.post(portEvent{i: i, port: name, kind: evRetry}) })
}

// stopMissing stops waiting for a missing port's interface.
func (a *Appliance) stopMissing(m *missingPort) {
	if m.cancel != nil {
		m.cancel()
		m.cancel = nil
	}
	if m.retry != nil {
		m.retry.Stop()
		m.retry = nil
	}
}

// syncLocked records as missing the attached ports that the laggs lost
// without the appliance hearing of it yet (their EventPortGone is queued,
// or was lost), so that a reconciliation starts from what runs.
//
// It reports whether it found any.
//
// +checklocks:a.mu
func (a *Appliance) syncLocked() bool {
	found := false
	for _, i := range a.ifaces {
		live := i.l.Ports()
		for n, p := range i.attached {
			if !slices.Contains(live, n) {
				delete(i.attached, n)
				a.log.Warn("a port's interface is gone; the port stays configured and is attached again when the interface appears",
					"lagg", i.name, "port", n)
				a.markMissingLocked(i, p, errGone{})
				found = true
			}
		}
	}
	return found
}
