package lagg

import (
	"hash/fnv"
	"strings"

	"github.com/ulagg/ulagg/lagg/lacp"
)

// ProtoLACP runs IEEE 802.1AX link aggregation through the lacp engine.
const ProtoLACP Proto = "lacp"

// protoLACP is the glue: the engine is pure logic; this file feeds it link
// changes and received PDUs, sends what it asks for on the right port,
// keeps its timer armed, and turns its per-port collecting/distributing
// state into the lagg's distribution.
type protoLACP struct {
	e   *lacp.Engine
	gen uint64
	c   *protoCtx // the call in progress, for SendPDU
}

func init() { registerProtocol(ProtoLACP, 3, func() protocol { return &protoLACP{} }) }

func lacpPortID(p *port) lacp.PortID { return lacp.PortID(p.slot + 1) }

// lacpPortState is the part of a port's LACP state that events report.
type lacpPortState struct{ collecting, distributing bool }

func (s lacpPortState) String() string {
	var w []string
	if s.collecting {
		w = append(w, "collecting")
	}
	if s.distributing {
		w = append(w, "distributing")
	}
	if len(w) == 0 {
		return "detached"
	}
	return strings.Join(w, ",")
}

// derivedKey stands in for NetBSD's use of the lagg's interface index: a
// stable, non-zero key per lagg name.
func derivedKey(name string) uint16 {
	h := fnv.New32a()
	h.Write([]byte(name))
	s := h.Sum32()
	k := uint16(s>>16) ^ uint16(s)
	if k == 0 {
		k = 1
	}
	return k
}

func engineConfig(c *protoCtx) lacp.Config {
	o := c.cfg.LACP
	var mac [6]byte
	copy(mac[:], c.mac)
	key := o.Key
	if key == 0 {
		key = derivedKey(c.name)
	}
	ec := lacp.DefaultConfig(mac, key)
	ec.SystemPriority = o.SystemPriority
	ec.Active = !o.Passive
	ec.FastRate = o.FastRate
	ec.MaxPorts = o.MaxPorts
	ec.MultiSpeed = o.MultiSpeed
	ec.MinPorts = o.MinPorts
	ec.Fallback = o.Fallback
	return ec
}

// SendPDU implements lacp.Output; the engine calls it only inside the calls
// below, while x.c is set.
func (x *protoLACP) SendPDU(id lacp.PortID, frame []byte) {
	for _, p := range x.c.ports {
		if lacpPortID(p) == id {
			if err := x.c.send(p, frame); err != nil {
				x.c.log.Debug("LACPDU not sent", "port", p.name, "err", err)
			}
			return
		}
	}
}

// enter makes c the call in progress; the returned func ends it, re-arming
// the engine's timer and reporting a changed selection.
func (x *protoLACP) enter(c *protoCtx) func() {
	x.c = c
	return func() {
		x.sync(c)
		x.c = nil
	}
}

func (x *protoLACP) sync(c *protoCtx) {
	if x.e == nil {
		return
	}
	if t, ok := x.e.NextDeadline(); ok {
		c.arm(t)
	}
	if g := x.e.Generation(); g != x.gen {
		x.gen = g
		c.rebuild = true
		for _, p := range c.ports {
			ps, ok := x.e.Port(lacpPortID(p))
			if !ok {
				continue
			}
			now := lacpPortState{ps.Collecting, ps.Distributing}
			if was, _ := p.proto.(lacpPortState); was != now {
				p.proto = now
				c.event(Event{Kind: EventLACP, Port: p.name, Detail: now.String()})
			}
		}
	}
}

func (x *protoLACP) attach(c *protoCtx) {
	defer x.enter(c)()
	e, err := lacp.NewEngine(engineConfig(c), x, c.now)
	if err != nil {
		// Options are validated before they reach here; an engine that
		// cannot start leaves the lagg with no distributing port.
		c.log.Error("lacp cannot start", "err", err)
		return
	}
	x.e = e
}

func (x *protoLACP) detach(c *protoCtx) {
	x.e = nil
	for _, p := range c.ports {
		p.proto = nil
	}
}

func (x *protoLACP) portAdded(c *protoCtx, p *port) {
	if x.e == nil {
		return
	}
	defer x.enter(c)()
	var mac [6]byte
	src := p.origMAC
	if validMAC(src) != nil {
		src = c.mac
	}
	copy(mac[:], src)
	if err := x.e.AddPort(lacpPortID(p), mac, lacp.PortConfig{Priority: p.prio, SpeedMbps: p.child.SpeedMbps()}, p.active, c.now); err != nil {
		c.log.Error("lacp: cannot add port", "port", p.name, "err", err)
	}
}

func (x *protoLACP) portRemoved(c *protoCtx, p *port) {
	if x.e == nil {
		return
	}
	defer x.enter(c)()
	if err := x.e.RemovePort(lacpPortID(p), c.now); err != nil {
		c.log.Error("lacp: cannot remove port", "port", p.name, "err", err)
	}
	p.proto = nil
}

func (x *protoLACP) portChanged(c *protoCtx, p *port) {
	if x.e == nil {
		return
	}
	defer x.enter(c)()
	_ = x.e.SetPortPriority(lacpPortID(p), p.prio, c.now)
	_ = x.e.SetPortLink(lacpPortID(p), p.active, p.child.SpeedMbps(), c.now)
}

// configChanged follows the options and the lagg's MAC (the system ID).
func (x *protoLACP) configChanged(c *protoCtx) {
	if x.e == nil {
		return
	}
	defer x.enter(c)()
	if err := x.e.SetConfig(engineConfig(c), c.now); err != nil {
		c.log.Error("lacp: options not applied", "err", err)
	}
}

func (x *protoLACP) input(c *protoCtx, p *port, frame []byte) bool {
	if x.e == nil {
		return false
	}
	defer x.enter(c)()
	x.e.Receive(lacpPortID(p), frame, c.now)
	return true
}

func (x *protoLACP) timer(c *protoCtx) {
	if x.e == nil {
		return
	}
	defer x.enter(c)()
	x.e.Advance(c.now)
}

func (x *protoLACP) distribute(c *protoCtx) distribution {
	var d distribution
	if x.e == nil {
		return d
	}
	for _, p := range c.ports {
		ps, ok := x.e.Port(lacpPortID(p))
		if !ok {
			continue
		}
		if ps.Collecting {
			d.rx |= p.bit()
		}
		if ps.Distributing {
			d.txPorts = append(d.txPorts, p)
		}
	}
	d.tx = newHashedTx(d.txPorts, c.cfg.Hash, c.prev)
	// Below min_ports (or with no partner and no fallback) the lagg is down
	// and sends nothing, though the ports keep their LACP state.
	d.up = x.e.Status().Up && d.tx != nil
	return d
}

func (x *protoLACP) portFlags(p *port, _ *distribution) PortFlags {
	if x.e == nil {
		return 0
	}
	ps, ok := x.e.Port(lacpPortID(p))
	if !ok {
		return 0
	}
	var f PortFlags
	if ps.Selected == "selected" && ps.Aggregator == x.e.Status().Active && ps.Aggregator != 0 || ps.Fallback {
		f |= PortActive
	}
	if ps.Collecting {
		f |= PortCollecting
	}
	if ps.Distributing {
		f |= PortDistributing
	}
	if ps.Standby {
		f |= PortStandby
	}
	return f
}

func (x *protoLACP) status(c *protoCtx, st *Status) {
	if x.e == nil {
		return
	}
	s := x.e.Status()
	st.LACP = &s
	for i := range st.Ports {
		for _, p := range c.ports {
			if p.name != st.Ports[i].Name {
				continue
			}
			if ps, ok := x.e.Port(lacpPortID(p)); ok {
				st.Ports[i].LACP = &ps
			}
		}
	}
}
