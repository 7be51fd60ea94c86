package lacp

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
)

// SystemKey identifies one side of a link aggregation group: system
// priority, system ID and key.
type SystemKey struct {
	SystemPriority uint16
	System         [6]byte
	Key            uint16
}

// SelectPolicy chooses the aggregator that carries traffic when the ports
// see more than one partner (Linux bonding's ad_select).
type SelectPolicy uint8

const (
	// SelectStable keeps the active aggregator while it has a selected
	// port; only then is another chosen, as with SelectBandwidth. A
	// partner on an extra link can never take the lagg from a working
	// aggregate, whatever it announces. The default.
	SelectStable SelectPolicy = iota
	// SelectBandwidth makes the aggregator with the highest total speed
	// of selected ports active, re-evaluated at every change; ties go to
	// more ports, then to the active one.
	SelectBandwidth
	// SelectCount makes the aggregator with the most selected ports
	// active; ties go to higher bandwidth, then to the active one.
	SelectCount
)

var selectNames = [...]string{"stable", "bandwidth", "count"}

// String returns the policy's name: stable, bandwidth or count.
func (s SelectPolicy) String() string {
	if int(s) < len(selectNames) {
		return selectNames[s]
	}
	return fmt.Sprintf("select(%d)", uint8(s))
}

// ParseSelectPolicy parses stable, bandwidth or count.
func ParseSelectPolicy(s string) (SelectPolicy, error) {
	if i := slices.Index(selectNames[:], s); i >= 0 {
		return SelectPolicy(i), nil
	}
	return 0, fmt.Errorf("%w: unknown select policy %q (want stable, bandwidth or count)", ErrConfig, s)
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
	nsel int    // SELECTED ports, during selectAll
	bw   uint64 // their total speed (Mbit/s), during selectAll
	used bool   // has ports, during selectAll
}

func (p *port) aggKey() aggKey {
	k := aggKey{partner: SystemKey{p.partner.SystemPriority, p.partner.System, p.partner.Key}}
	if p.partner.State&StateAggregation == 0 {
		k.individual = p.id
	}
	return k
}

// partnerControls reports whether the partner system k has the better
// (numerically lower) System Identifier — priority, then MAC — and so
// decides which links of the aggregation are used (802.1AX-2014 6.6.1,
// 6.7.1: the port priorities and numbers of the system with the better
// System Identifier rule). Both sides then order their ports alike, and
// with max ports below the link count they select the same links.
func (e *Engine) partnerControls(k SystemKey) bool {
	return cmp.Or(
		cmp.Compare(k.SystemPriority, e.cfg.SystemPriority),
		bytes.Compare(k.System[:], e.cfg.SystemMAC[:]),
	) < 0
}

// comparePorts orders the ports of one aggregator, best first, by the
// controlling system's Port Identifiers (port priority, then port number),
// a faster link between the two: ours when we control, the partner's
// otherwise. Our port ID breaks what ties remain.
func comparePorts(a, b *port, partnerCtl bool) int {
	if partnerCtl {
		return cmp.Or(
			cmp.Compare(a.partner.PortPriority, b.partner.PortPriority),
			cmp.Compare(b.speed, a.speed),
			cmp.Compare(a.partner.Port, b.partner.Port),
			cmp.Compare(a.id, b.id),
		)
	}
	return cmp.Or(
		cmp.Compare(a.prio, b.prio),
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
		a.nsel, a.bw, a.used = 0, 0, false
	}
	for _, p := range e.ports {
		p.nextAgg, p.nextSel = nil, unselected
		if !p.hasPartner() || p.adminDown {
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
		ctl := e.partnerControls(a.key.partner)
		slices.SortFunc(members, func(x, y *port) int { return comparePorts(x, y, ctl) })
		for _, p := range members {
			if a.nsel < e.cfg.MaxPorts && (e.cfg.MultiSpeed || p.speed == members[0].speed) {
				p.nextSel = selected
				a.nsel++
				a.bw += p.speed
			} else {
				p.nextSel = standby
			}
		}
		clear(members)
		e.scratch = members[:0]
	}

	prev := e.active
	e.active = nil
	if e.cfg.Select == SelectStable && prev != nil && prev.used && prev.nsel > 0 {
		// Linux's ad_select=stable: the active aggregator stays while it
		// has ports, whoever else appears.
		e.active = prev
	} else {
		for _, a := range e.aggs {
			if a.nsel > 0 && (e.active == nil || e.betterAgg(a, e.active, prev)) {
				e.active = a
			}
		}
	}
	e.countPartners()

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

// betterAgg reports whether a should be active rather than b, after Linux
// bonding's ad_agg_selection_test: an aggregate beats an individual link;
// then the policy's measure (bandwidth, or port count then bandwidth;
// stable chooses as bandwidth does when it must choose); then the current
// active aggregator (no change on a tie); then, as NetBSD, the lower
// partner system priority, system ID and key.
func (e *Engine) betterAgg(a, b, current *aggregator) bool {
	if ai, bi := a.key.individual != 0, b.key.individual != 0; ai != bi {
		return bi
	}
	var c int
	if e.cfg.Select == SelectCount {
		c = cmp.Or(cmp.Compare(a.nsel, b.nsel), cmp.Compare(a.bw, b.bw))
	} else {
		c = cmp.Or(cmp.Compare(a.bw, b.bw), cmp.Compare(a.nsel, b.nsel))
	}
	if c != 0 {
		return c > 0
	}
	if a == current || b == current {
		return a == current
	}
	return cmp.Or(
		cmp.Compare(a.key.partner.SystemPriority, b.key.partner.SystemPriority),
		bytes.Compare(a.key.partner.System[:], b.key.partner.System[:]),
		cmp.Compare(a.key.partner.Key, b.key.partner.Key),
		cmp.Compare(a.id, b.id),
	) < 0
}

// countPartners counts the partner systems (with their keys) the
// aggregators stand for: more than one means some links of this lagg go to
// another device, or to another group on the partner (a miscabled or rogue
// link). The alarm's raises are counted.
func (e *Engine) countPartners() {
	n := 0
	for i, a := range e.aggs {
		if !slices.ContainsFunc(e.aggs[:i], func(b *aggregator) bool { return b.key.partner == a.key.partner }) {
			n++
		}
	}
	if n > 1 && e.partnerSystems <= 1 {
		e.mismatches++
	}
	e.partnerSystems = n
}
