package lagg

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// monitor is a lagg's link monitor (monitor.go has the design). Lagg.mu
// guards everything in it but rx, which the receive path writes.
type monitor struct {
	rx    [MaxPorts]monRx
	ports [MaxPorts]monPort // by port slot
	timer Timer
	gen   uint64 // a restart bumps it: a callback of an older one does nothing
}

// monRx is what the receive path learned of one port slot this interval.
type monRx struct {
	got     atomic.Uint64 // bit i: target i answered (ARP targets first, then NS)
	heard   atomic.Bool   // anything at all arrived (ports not validated)
	replies atomic.Uint64 // valid replies, for status
}

// monPort is the control path's state of the port in one slot.
type monPort struct {
	owner     *port // the port the state is of; another port in the slot starts afresh
	down      bool
	probed    bool // probes left in the interval now ending
	missed    int
	firstMiss time.Time // start of the first unanswered interval in a row
	reason    string
	failures  uint64
	probes    uint64
}

// portLocked returns p's state, fresh if p is new in its slot.
//
// +checklocks:l.mu
func (l *Lagg) monPortLocked(p *port) *monPort {
	mp := &l.mon.ports[p.slot]
	if mp.owner != p {
		*mp = monPort{owner: p}
		rx := &l.mon.rx[p.slot]
		rx.got.Store(0)
		rx.heard.Store(false)
		rx.replies.Store(0)
	}
	return mp
}

// monitorDownLocked reports the monitor's verdict on p: true while its
// probes go unanswered.
//
// +checklocks:l.mu
func (l *Lagg) monitorDownLocked(p *port) bool {
	mp := &l.mon.ports[p.slot]
	return mp.owner == p && mp.down
}

// monitorRestartLocked starts the monitor afresh after its settings
// changed: every port is monitor-up again (optimistic, so turning the
// monitor on disturbs nothing), the first probes leave now and the first
// verdict comes one interval later.
//
// +checklocks:l.mu
func (l *Lagg) monitorRestartLocked() {
	m := &l.mon
	m.gen++
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	var wasDown []*port
	for _, p := range l.ports {
		if l.monitorDownLocked(p) {
			wasDown = append(wasDown, p)
		}
		l.mon.ports[p.slot].owner = nil
		l.monPortLocked(p)
	}
	for _, p := range wasDown {
		l.emit(Event{Kind: EventMonitor, Port: p.name, Up: true, Detail: "monitor restarted"})
		l.settleLocked(p, 0)
	}
	opt := l.cfg.Monitor
	if !opt.Enabled() || l.closed {
		return
	}
	l.log.Info("link monitor started", "monitor", opt.String())
	l.monitorProbeLocked()
	l.monitorArmLocked()
}

// +checklocks:l.mu
func (l *Lagg) monitorArmLocked() {
	gen := l.mon.gen
	l.mon.timer = l.clock.AfterFunc(l.cfg.Monitor.Interval, func() { l.monitorTick(gen) })
}

// monitorStopLocked stops probing for good (Close).
//
// +checklocks:l.mu
func (l *Lagg) monitorStopLocked() {
	l.mon.gen++
	if l.mon.timer != nil {
		l.mon.timer.Stop()
		l.mon.timer = nil
	}
}

// monitorTick ends an interval: it judges every port on the replies that
// came, then sends the next probes.
func (l *Lagg) monitorTick(gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || gen != l.mon.gen || !l.cfg.Monitor.Enabled() {
		return
	}
	now := l.clock.Now()
	for _, p := range l.ports {
		l.monitorJudgeLocked(p, now)
	}
	l.monitorProbeLocked()
	l.monitorArmLocked()
}

// monitorJudgeLocked decides on p from the interval that just ended.
//
// +checklocks:l.mu
func (l *Lagg) monitorJudgeLocked(p *port, now time.Time) {
	opt := l.cfg.Monitor
	mp := l.monPortLocked(p)
	rx := &l.mon.rx[p.slot]
	got, heard := rx.got.Swap(0), rx.heard.Swap(false)
	if !mp.probed || p.leaving {
		return // no probe left (link down, or new): nothing to judge
	}
	mp.probed = false
	all := uint64(1)<<(len(opt.ARPTargets)+len(opt.NSTargets)) - 1
	ok := got != 0
	if opt.Require == RequireAll {
		ok = got == all
	}
	if !ok && heard && l.monitorLooseLocked(p) {
		ok = true
	}
	if ok {
		mp.missed = 0
		if mp.down {
			mp.down, mp.reason = false, ""
			l.log.Info("link monitor: port answers again", "port", p.name)
			l.emit(Event{Kind: EventMonitor, Port: p.name, Up: true, Detail: "answered"})
			l.settleLocked(p, 0)
		}
		return
	}
	if mp.missed == 0 {
		mp.firstMiss = now.Add(-opt.Interval)
	}
	if mp.missed < 255 {
		mp.missed++
	}
	if mp.down || mp.missed < opt.MissedMax {
		return
	}
	mp.down = true
	mp.failures++
	mp.reason = fmt.Sprintf("%s unanswered %d×", unanswered(opt, got), mp.missed)
	l.log.Warn("link monitor: port down", "port", p.name, "reason", mp.reason)
	l.emit(Event{Kind: EventMonitor, Port: p.name, Up: false, Detail: mp.reason})
	if p.active {
		l.lossAt = mp.firstMiss // a failover is timed from the first lost interval
	}
	l.settleLocked(p, 0)
}

// monitorLooseLocked reports whether p is alive on any traffic (validate
// does not cover it).
//
// +checklocks:l.mu
func (l *Lagg) monitorLooseLocked(p *port) bool {
	switch l.cfg.Monitor.Validate {
	case ValidateActive:
		return !l.dist.transmits(p)
	case ValidateBackup:
		return l.dist.transmits(p)
	}
	return false
}

// unanswered names the targets whose bit is not in got: "arp 10.0.0.1, ns fd00::1".
func unanswered(opt *MonitorOptions, got uint64) string {
	var names []string
	for i, a := range opt.ARPTargets {
		if got&(1<<i) == 0 {
			names = append(names, "arp "+a.String())
		}
	}
	for i, a := range opt.NSTargets {
		if got&(1<<(len(opt.ARPTargets)+i)) == 0 {
			names = append(names, "ns "+a.String())
		}
	}
	return strings.Join(names, ", ")
}

// monitorProbeLocked sends every target's probe through every port whose
// link is up.
//
// +checklocks:l.mu
func (l *Lagg) monitorProbeLocked() {
	opt := l.cfg.Monitor
	for _, p := range l.ports {
		mp := l.monPortLocked(p)
		if !p.linkUp || p.leaving {
			continue
		}
		mac := l.probeMACLocked(p)
		for _, t := range opt.ARPTargets {
			if err := p.sendFrame(arpProbe(mac, t)); err != nil {
				l.log.Debug("link monitor: probe not sent", "port", p.name, "err", err)
			}
			mp.probes++
		}
		for _, t := range opt.NSTargets {
			if err := p.sendFrame(nsProbe(mac, t)); err != nil {
				l.log.Debug("link monitor: probe not sent", "port", p.name, "err", err)
			}
			mp.probes++
		}
		mp.probed = true
	}
}

// probeMACLocked is the MAC p probes with: its own, else the lagg's.
//
// +checklocks:l.mu
func (l *Lagg) probeMACLocked(p *port) tcpip.LinkAddress {
	if validMAC(p.origMAC) == nil {
		return p.origMAC
	}
	return l.mac
}

// monitorSnapLocked is the receive path's view of the monitor for the
// distribution d: the ports' probe MACs always (frames to them are dropped
// with the monitor off), the rest when it is on.
//
// +checklocks:l.mu
func (l *Lagg) monitorSnapLocked(d *distribution) *monSnap {
	opt := l.cfg.Monitor
	ms := &monSnap{rx: &l.mon.rx, on: opt.Enabled()}
	for _, p := range l.ports {
		mac := l.probeMACLocked(p)
		if mac == l.mac {
			ms.shared |= p.bit()
			continue
		}
		ms.mac[p.slot] = mac
		ms.ll[p.slot] = linkLocal(mac)
		ms.slots |= p.bit()
	}
	if !ms.on {
		return ms
	}
	for _, t := range opt.ARPTargets {
		ms.arp = append(ms.arp, t.As4())
	}
	for _, t := range opt.NSTargets {
		ms.ns = append(ms.ns, t.As16())
	}
	// Replies must come back on the probing port to prove both ways
	// (monitor.go), except where the switch cannot send them there: to the
	// port probing with the lagg's MAC, which the switch learns on whichever
	// port sent last, and under lacp, whose partner's bond picks the member
	// for every frame. Their replies prove the probe's way out.
	ms.byDst = ms.shared
	if l.cfg.Proto == ProtoLACP {
		ms.byDst = ms.slots | ms.shared
	}
	for _, p := range l.ports {
		if ms.shared&p.bit() != 0 {
			ms.mac[p.slot] = l.mac
			ms.ll[p.slot] = linkLocal(l.mac)
		}
		tx := d.transmits(p)
		if opt.Validate == ValidateActive && !tx || opt.Validate == ValidateBackup && tx {
			ms.loose |= p.bit()
		}
	}
	return ms
}

// monitorStatusLocked fills the ports' monitor status.
//
// +checklocks:l.mu
func (l *Lagg) monitorStatusLocked(st *Status) {
	if !l.cfg.Monitor.Enabled() {
		return
	}
	opt := *l.cfg.Monitor
	st.Monitor = &opt
	for _, p := range l.ports {
		ps := st.Port(p.name)
		if ps == nil {
			continue
		}
		mp := l.monPortLocked(p)
		ps.Monitor = &PortMonitorStatus{
			Up: !mp.down, Reason: mp.reason, Missed: mp.missed, Failures: mp.failures,
			Probes: mp.probes, Replies: l.mon.rx[p.slot].replies.Load(),
		}
	}
}

// linkLocal is fe80::/64 with the modified EUI-64 of mac.
func linkLocal(mac tcpip.LinkAddress) [16]byte {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	if len(mac) == 6 {
		a[8], a[9], a[10] = mac[0]^2, mac[1], mac[2]
		a[11], a[12] = 0xff, 0xfe
		a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	}
	return a
}

// ProbeLinkLocal returns the link-local address NS probes of a port with
// MAC mac come from, for tests and documentation.
func ProbeLinkLocal(mac tcpip.LinkAddress) netip.Addr { return netip.AddrFrom16(linkLocal(mac)) }

// settleLocked moves p's active state to its verdict — link up and not
// monitor-down — after the up delay, or downDelay going down (the link's
// down delay; none for the monitor, whose missed_max is its delay).
//
// +checklocks:l.mu
func (l *Lagg) settleLocked(p *port, downDelay time.Duration) {
	if p.delay != nil {
		p.delay.Stop()
		p.delay = nil
	}
	up := l.verdictLocked(p)
	delay := downDelay
	if up {
		delay = l.cfg.UpDelay
	}
	if delay <= 0 || p.active == up {
		l.setActiveLocked(p, up)
		return
	}
	p.delay = l.clock.AfterFunc(delay, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if !p.leaving && !l.closed && l.verdictLocked(p) == up {
			l.setActiveLocked(p, up)
		}
	})
}

// verdictLocked is whether p may carry traffic, delays aside: link up and
// not monitor-down.
//
// +checklocks:l.mu
func (l *Lagg) verdictLocked(p *port) bool { return p.linkUp && !l.monitorDownLocked(p) }
