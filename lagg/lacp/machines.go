package lacp

import (
	"encoding/binary"
	"time"
)

func (e *Engine) currentTimeout() time.Duration {
	if e.cfg.FastRate {
		return shortTimeout
	}
	return longTimeout
}

// actorInfo is the port's Actor_Oper_* information.
func (e *Engine) actorInfo(p *port) Info {
	s := StateAggregation
	if e.cfg.Active {
		s |= StateActivity
	}
	if e.cfg.FastRate {
		s |= StateTimeout
	}
	switch p.mux {
	case muxDistributing:
		s |= StateDistributing
		fallthrough
	case muxCollecting:
		s |= StateCollecting
		fallthrough
	case muxAttached:
		s |= StateSync
	}
	switch p.rx {
	case rxDefaulted:
		s |= StateDefaulted
	case rxExpired:
		s |= StateExpired
	}
	return Info{
		SystemPriority: e.cfg.SystemPriority,
		System:         e.cfg.SystemMAC,
		Key:            e.cfg.Key,
		PortPriority:   p.prio,
		Port:           uint16(p.id),
		State:          s,
	}
}

// portEnable is PORT_DISABLED -> EXPIRED on link up.
func (e *Engine) portEnable(p *port, speed uint64) {
	p.linkUp = true
	p.speed = speed
	p.heard = false
	e.rxExpire(p)
	p.ntt = true
	p.actorChurn, p.actorChurnAt = churnMonitor, e.now.Add(churnDetection)
	p.partnerChurn, p.partnerChurnAt = churnMonitor, e.now.Add(churnDetection)
	e.selDirty = true
}

// portDisable is any state -> PORT_DISABLED on link down. The partner
// information is kept (the standard's port_moved needs it) but is no
// longer selectable.
func (e *Engine) portDisable(p *port) {
	p.linkUp = false
	p.heard = false
	p.rx = rxPortDisabled
	p.partner.State &^= StateSync
	p.currentWhile = time.Time{}
	p.sel = unselected
	e.muxRun(p) // detach now, not at the next settle
	p.agg = nil
	p.periodic, p.periodicFast = time.Time{}, false
	p.ntt = false
	p.txAt = time.Time{}
	p.markers = p.markers[:0]
	p.actorChurn, p.actorChurnAt = noChurn, time.Time{}
	p.partnerChurn, p.partnerChurnAt = noChurn, time.Time{}
	// Whatever looped the port may be gone when the link returns; the
	// LACPDU sent at link up finds out again at once.
	p.looped, p.loopedUntil = false, time.Time{}
	e.selDirty = true
}

// rxExpire enters EXPIRED: partner out of sync and asked to hurry.
func (e *Engine) rxExpire(p *port) {
	p.rx = rxExpired
	p.partner.State &^= StateSync
	p.partner.State |= StateTimeout
	p.currentWhile = e.now.Add(shortTimeout)
}

// rxDefault enters DEFAULTED with the administrative partner.
func (e *Engine) rxDefault(p *port) {
	p.rx = rxDefaulted
	p.currentWhile = time.Time{}
	if !p.partner.sameIdentity(partnerDefaults) {
		p.reset = true
	}
	p.partner = partnerDefaults
	p.heard = false
	e.selDirty = true
}

func (e *Engine) receive(p *port, frame []byte) {
	switch {
	case len(frame) < ethHeaderLen:
		p.c.MalformedRx++
		return
	case binary.BigEndian.Uint16(frame[12:14]) != EtherTypeSlowProtocols:
		p.c.UnknownRx++
		return
	case len(frame) == ethHeaderLen:
		p.c.MalformedRx++
		return
	}
	switch frame[ethHeaderLen] {
	case SubtypeLACP:
		pdu, err := DecodeLACPDU(frame)
		if err != nil {
			p.c.MalformedRx++
			return
		}
		e.receiveLACPDU(p, &pdu)
	case SubtypeMarker:
		m, err := DecodeMarker(frame)
		if err != nil {
			p.c.MalformedRx++
			return
		}
		e.receiveMarker(p, m)
	default:
		p.c.UnknownRx++
	}
}

// receiveLACPDU is the receive machine's CURRENT state entry
// (802.1AX-2014 6.4.12): update_Selected, update_NTT, recordPDU.
func (e *Engine) receiveLACPDU(p *port, pdu *LACPDU) {
	if pdu.Actor.System == e.cfg.SystemMAC && pdu.Actor.SystemPriority == e.cfg.SystemPriority {
		// As NetBSD, our own PDU came back and is dropped. Unlike NetBSD
		// the port is marked looped: it must not carry traffic in fallback
		// either (our own frames would come back to us).
		p.c.LoopbackRx++
		if p.linkUp {
			if !p.looped {
				p.looped = true
				p.c.Loops++
				e.selDirty = true
			}
			p.loopedUntil = e.now.Add(loopHold)
		}
		return
	}
	if !p.linkUp {
		p.c.DisabledRx++
		return
	}
	p.c.LACPDUsRx++

	// port_moved: the partner port now reachable here is no longer behind
	// a disabled port.
	for _, q := range e.ports {
		if q != p && q.rx == rxPortDisabled && q.partner.System == pdu.Actor.System &&
			q.partner.SystemPriority == pdu.Actor.SystemPriority && q.partner.Port == pdu.Actor.Port {
			q.partner = partnerDefaults
		}
	}

	if !p.partner.sameIdentity(pdu.Actor) {
		p.reset = true
		e.selDirty = true
	}
	actor := e.actorInfo(p)
	const nttMask = StateActivity | StateTimeout | StateAggregation | StateSync
	if !pdu.Partner.sameIdentity(actor) || (pdu.Partner.State^actor.State)&nttMask != 0 {
		p.ntt = true
	}

	part := pdu.Actor
	match := pdu.Partner.sameIdentity(actor)
	insync := part.State&StateSync != 0 &&
		(match || part.State&StateAggregation == 0)
	if !e.cfg.Active && part.State&StateActivity == 0 {
		insync = false // both passive: nothing to aggregate
	}
	part.State &^= StateSync
	if insync {
		part.State |= StateSync
	}
	p.partner = part

	if p.rx != rxCurrent || !p.heard {
		e.selDirty = true
	}
	p.rx = rxCurrent
	p.heard = true
	p.currentWhile = e.now.Add(e.currentTimeout())
}

func (e *Engine) receiveMarker(p *port, m MarkerPDU) {
	if !p.linkUp {
		p.c.DisabledRx++
		return
	}
	if m.Response {
		p.c.MarkerResponseRx++ // we never send Marker Information
		return
	}
	p.c.MarkerRx++
	if len(p.markers) == maxPendingMarkers {
		p.c.MarkerDropped++
		return
	}
	m.Response = true
	p.markers = append(p.markers, m)
}

// fireTimers handles every timer expired at e.now.
func (e *Engine) fireTimers() {
	now := e.now
	for _, p := range e.ports {
		if due(&p.currentWhile, now) {
			switch p.rx {
			case rxCurrent:
				e.rxExpire(p)
			case rxExpired:
				e.rxDefault(p)
			}
		}
		if due(&p.periodic, now) {
			p.ntt = true
			p.periodic = now.Add(e.period(p))
		}
		if due(&p.waitWhile, now) {
			p.waitDone = true
		}
		due(&p.txAt, now) // transmit retries in settle
		if due(&p.actorChurnAt, now) && p.actorChurn == churnMonitor {
			p.actorChurn = churn
			p.c.ActorChurn++
		}
		if due(&p.partnerChurnAt, now) && p.partnerChurn == churnMonitor {
			p.partnerChurn = churn
			p.c.PartnerChurn++
		}
		if due(&p.loopedUntil, now) && p.looped {
			p.looped = false
			e.selDirty = true
		}
	}
}

// settle runs selection and the per-port machines to a fixed point, sends
// what is due and publishes the data-path view.
func (e *Engine) settle() {
	if e.selDirty {
		e.selectAll()
	}
	for _, p := range e.ports {
		e.muxRun(p)
	}
	e.updateFallback()
	for _, p := range e.ports {
		e.churnRun(p)
		e.periodicRun(p)
		e.transmit(p)
	}
	e.publish()
}

// attachable reports whether the port may leave WAITING or stay attached:
// SELECTED in the active aggregator. Ports of other aggregators wait, as
// only one aggregator carries traffic (NetBSD).
func (e *Engine) attachable(p *port) bool {
	return p.linkUp && p.sel == selected && p.agg != nil && p.agg == e.active
}

// ready is the standard's Ready: every WAITING port of the aggregator has
// waited, or no port of the lagg can still find a partner (the wait only
// gathers ports coming up together, and that set is then complete).
func (e *Engine) ready(p *port) bool {
	anyPending := false
	for _, q := range e.ports {
		anyPending = anyPending || q.pending()
	}
	if !anyPending {
		return true
	}
	for _, q := range e.ports {
		if q.agg == p.agg && q.mux == muxWaiting && !q.waitDone {
			return false
		}
	}
	return true
}

// muxRun steps the mux machine (802.1AX-2014 6.4.15, independent control)
// until it rests.
func (e *Engine) muxRun(p *port) {
	for range 8 {
		psync := p.partner.State&StateSync != 0
		pcoll := p.partner.State&StateCollecting != 0
		switch p.mux {
		case muxDetached:
			if p.sel == unselected || !p.linkUp {
				return
			}
			p.mux = muxWaiting
			p.waitDone = e.cfg.AggregateWait == 0
			p.waitWhile = time.Time{}
			if !p.waitDone {
				p.waitWhile = e.now.Add(e.cfg.AggregateWait)
			}
		case muxWaiting:
			switch {
			case p.sel == unselected || !p.linkUp:
				e.muxDetach(p)
			case e.attachable(p) && e.ready(p):
				p.mux = muxAttached
			default:
				return
			}
		case muxAttached:
			switch {
			case !e.attachable(p):
				e.muxDetach(p)
			case psync:
				p.mux = muxCollecting
			default:
				return
			}
		case muxCollecting:
			switch {
			case !e.attachable(p) || !psync:
				p.mux = muxAttached
			case pcoll:
				p.mux = muxDistributing
			default:
				return
			}
		case muxDistributing:
			if e.attachable(p) && psync && pcoll {
				return
			}
			p.mux = muxCollecting
		}
	}
}

func (e *Engine) muxDetach(p *port) {
	p.mux = muxDetached
	p.waitWhile, p.waitDone = time.Time{}, false
}

// churnRun is the actor and partner churn detection machines
// (802.1AX-2014 6.4.17). A disabled port rests in NO_CHURN so a port that
// is merely down is not reported as churning.
func (e *Engine) churnRun(p *port) {
	if !p.linkUp {
		return
	}
	step := func(st *churnState, at *time.Time, insync bool) {
		switch {
		case insync && *st != noChurn:
			*st, *at = noChurn, time.Time{}
		case !insync && *st == noChurn:
			*st, *at = churnMonitor, e.now.Add(churnDetection)
		}
	}
	step(&p.actorChurn, &p.actorChurnAt, p.attached())
	step(&p.partnerChurn, &p.partnerChurnAt, p.partner.State&StateSync != 0)
}

// noPeriodic is the periodic machine's NO_PERIODIC condition.
func (e *Engine) noPeriodic(p *port) bool {
	return !p.linkUp || (!e.cfg.Active && p.partner.State&StateActivity == 0)
}

// period follows the partner's timeout bit: the partner says how often it
// needs to hear from us (NetBSD used the actor's bit).
func (e *Engine) period(p *port) time.Duration {
	if p.partner.State&StateTimeout != 0 {
		return fastPeriodic
	}
	return slowPeriodic
}

// periodicRun is the periodic transmission machine (802.1AX-2014 6.4.13).
func (e *Engine) periodicRun(p *port) {
	if e.noPeriodic(p) {
		p.periodic, p.periodicFast = time.Time{}, false
		return
	}
	fast := p.partner.State&StateTimeout != 0
	switch {
	case p.periodic.IsZero():
		p.periodic = e.now.Add(e.period(p))
	case fast && !p.periodicFast:
		// SLOW_PERIODIC -> PERIODIC_TX: the partner now wants short timeouts.
		p.ntt = true
		p.periodic = e.now.Add(fastPeriodic)
	}
	p.periodicFast = fast
}

// transmit is the transmit machine (802.1AX-2014 6.4.16): NTT unless
// NO_PERIODIC, at most txLimit LACPDUs per fastPeriodic; Marker Responses
// (802.1AX-2014 6.5.4.2) wait only for the Slow Protocols limit of
// slowLimit frames per second (IEEE 802.3 Annex 57A), which LACPDUs count
// towards too. A pending LACPDU goes first. What is blocked stays pending
// and txAt wakes us when it may go.
func (e *Engine) transmit(p *port) {
	if !p.linkUp {
		return
	}
	if a := e.actorInfo(p); a != p.lastActor {
		p.lastActor = a
		p.ntt = true
	}
	for {
		lacpdu := p.ntt && !e.noPeriodic(p)
		marker := len(p.markers) > 0
		if !lacpdu && !marker {
			p.txAt = time.Time{}
			return
		}
		slowAt := e.ringFree(p.slowTimes[p.slowNext])
		lacpAt := e.ringFree(p.txTimes[p.txNext])
		switch {
		case lacpdu && slowAt.IsZero() && lacpAt.IsZero():
			marker = false
		case marker && slowAt.IsZero():
			lacpdu = false
		default:
			// Wake when the first of them may go.
			var at time.Time
			if lacpdu {
				at = later(slowAt, lacpAt)
			}
			if marker && (at.IsZero() || slowAt.Before(at)) {
				at = slowAt
			}
			p.txAt = at
			return
		}
		p.slowTimes[p.slowNext] = e.now
		p.slowNext = (p.slowNext + 1) % slowLimit
		src := p.mac
		if src == ([6]byte{}) {
			src = e.cfg.SystemMAC
		}
		var frame []byte
		if lacpdu {
			p.txTimes[p.txNext] = e.now
			p.txNext = (p.txNext + 1) % txLimit
			pdu := LACPDU{Version: 1, Actor: p.lastActor, Partner: p.partner}
			frame = pdu.AppendFrame(e.txBuf[:0], src)
			p.ntt = false
			p.c.LACPDUsTx++
		} else {
			frame = p.markers[0].AppendFrame(e.txBuf[:0], src)
			p.markers = append(p.markers[:0], p.markers[1:]...)
			p.c.MarkerResponseTx++
		}
		e.out.SendPDU(p.id, frame)
	}
}

// ringFree returns the zero time if the oldest transmission of a rate
// ring, oldest, leaves room for one more now, else when it will.
func (e *Engine) ringFree(oldest time.Time) time.Time {
	if oldest.IsZero() || e.now.Sub(oldest) >= fastPeriodic {
		return time.Time{}
	}
	return oldest.Add(fastPeriodic)
}

// later returns the later of two times, the zero time counting as earliest.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// updateFallback decides fallback: when no port has or may still get a
// partner, every port with link up that is not looped collects and may
// transmit without LACP (the lagg transmits on the one the partner's
// traffic arrives on, and on the best one by priority then ID until any
// arrives). The first LACPDU on any port ends it.
func (e *Engine) updateFallback() {
	e.fallback, e.fbBest = false, nil
	if !e.cfg.Fallback {
		return
	}
	for _, p := range e.ports {
		if p.hasPartner() || p.pending() {
			return
		}
	}
	for _, p := range e.ports {
		if p.fallbackCandidate() && (e.fbBest == nil || p.prio < e.fbBest.prio) {
			e.fbBest = p // ports are in ID order, so ties keep the lower ID
		}
	}
	e.fallback = e.fbBest != nil
}

// fallbackCandidate reports whether the port may carry traffic in fallback.
func (p *port) fallbackCandidate() bool { return p.linkUp && !p.looped && !p.adminDown }

// publish bumps the generation when the data-path view changed.
func (e *Engine) publish() {
	n := 0
	for _, p := range e.ports {
		if p.mux == muxDistributing {
			n++
		}
	}
	up := n >= e.cfg.MinPorts || e.fallback
	active := 0
	if e.active != nil {
		active = e.active.id
	}
	changed := up != e.up || active != e.pubActive
	e.up, e.pubActive = up, active
	for _, p := range e.ports {
		v := e.view(p)
		if v != p.pub {
			p.pub = v
			changed = true
		}
	}
	if changed {
		e.gen++
	}
}

func (e *Engine) view(p *port) pubView {
	v := pubView{sel: p.sel, fallback: e.fallback && p.fallbackCandidate(), best: p == e.fbBest, looped: p.looped}
	if p.agg != nil {
		v.agg = p.agg.id
	}
	v.coll = p.mux >= muxCollecting || v.fallback
	v.dist = p.mux == muxDistributing || v.fallback
	return v
}
