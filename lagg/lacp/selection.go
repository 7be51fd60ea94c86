package lacp

import (
	"bytes"
	"cmp"
	"slices"
)

// SystemKey identifies one side of a link aggregation group: system
// priority, system ID and key.
type SystemKey struct {
	SystemPriority uint16
	System         [6]byte
	Key            uint16
}

// aggKey is what an aggregator is keyed by. Our own system and key are the
// same for every port, so only the partner side varies (NetBSD).
type aggKey struct {
	partner    SystemKey
	individual PortID // set when the partner port is not aggregatable
}

type aggregator struct {
	id   int
	key  aggKey
	nsel int  // SELECTED ports, during selectAll
	used bool // has ports, during selectAll
}

func (p *port) aggKey() aggKey {
	k := aggKey{partner: SystemKey{p.partner.SystemPriority, p.partner.System, p.partner.Key}}
	if p.partner.State&StateAggregation == 0 {
		k.individual = p.id
	}
	return k
}

// comparePorts orders ports inside an aggregator like NetBSD's
// lacp_port_priority_max: actor port priority, partner port priority,
// higher speed, then port ID for determinism.
func comparePorts(a, b *port) int {
	return cmp.Or(
		cmp.Compare(a.prio, b.prio),
		cmp.Compare(a.partner.PortPriority, b.partner.PortPriority),
		cmp.Compare(b.speed, a.speed),
		cmp.Compare(a.id, b.id),
	)
}

// selectAll is the selection logic: it maps every port with a partner to
// the aggregator of that partner, marks the best MaxPorts SELECTED and the
// rest STANDBY, and picks the active aggregator. Ports whose aggregator
// changes, or whose partner changed identity, detach first.
func (e *Engine) selectAll() {
	e.selDirty = false
	for _, a := range e.aggs {
		a.nsel, a.used = 0, false
	}
	for _, p := range e.ports {
		p.nextAgg, p.nextSel = nil, unselected
		if !p.hasPartner() {
			continue
		}
		k := p.aggKey()
		i := slices.IndexFunc(e.aggs, func(a *aggregator) bool { return a.key == k })
		if i < 0 {
			e.aggs = append(e.aggs, &aggregator{id: e.nextAggID, key: k})
			e.nextAggID++
			i = len(e.aggs) - 1
		}
		e.aggs[i].used = true
		p.nextAgg = e.aggs[i]
	}
	e.aggs = slices.DeleteFunc(e.aggs, func(a *aggregator) bool { return !a.used })

	for _, a := range e.aggs {
		members := e.scratch[:0]
		for _, p := range e.ports {
			if p.nextAgg == a {
				members = append(members, p)
			}
		}
		slices.SortFunc(members, comparePorts)
		for _, p := range members {
			if a.nsel < e.cfg.MaxPorts && (e.cfg.MultiSpeed || p.speed == members[0].speed) {
				p.nextSel = selected
				a.nsel++
			} else {
				p.nextSel = standby
			}
		}
		clear(members)
		e.scratch = members[:0]
	}

	prev := e.active
	e.active = nil
	for _, a := range e.aggs {
		if a.nsel > 0 && (e.active == nil || e.betterAgg(a, e.active, prev)) {
			e.active = a
		}
	}

	for _, p := range e.ports {
		if p.reset || p.agg != p.nextAgg {
			p.reset = false
			p.sel = unselected
			e.muxRun(p)
		}
		p.agg, p.sel = p.nextAgg, p.nextSel
		p.nextAgg = nil
	}
}

// betterAgg reports whether a should be active rather than b: lower
// partner system priority wins (NetBSD), the current active aggregator
// wins ties (stability), then the lower partner system ID and key.
func (e *Engine) betterAgg(a, b, current *aggregator) bool {
	if c := cmp.Compare(a.key.partner.SystemPriority, b.key.partner.SystemPriority); c != 0 {
		return c < 0
	}
	if a == current || b == current {
		return a == current
	}
	return cmp.Or(
		bytes.Compare(a.key.partner.System[:], b.key.partner.System[:]),
		cmp.Compare(a.key.partner.Key, b.key.partner.Key),
		cmp.Compare(a.id, b.id),
	) < 0
}
