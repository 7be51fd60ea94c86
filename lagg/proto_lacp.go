package lagg

import (
	"hash/fnv"
	"time"

	"github.com/ulagg/ulagg/lagg/lacp"
)

// protoLACP runs IEEE 802.1AX through the lacp engine. The engine is pure
// logic; this file feeds it link changes and received PDUs, sends what it
// asks for on the right port, keeps its timer armed on the lagg's control
// goroutine, and turns its per-port collecting/distributing state into the
// lagg's distribution. All of it runs with Lagg.mu held.
type protoLACP struct {
	l   *Lagg
	e   *lacp.Engine
	gen uint64
}

func init() { registerProtocol("lacp", func() protocol { return &protoLACP{} }) }

func lacpPortID(p *port) lacp.PortID { return lacp.PortID(p.slot + 1) }

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

func (x *protoLACP) config() lacp.Config {
	o := x.l.opts.lacp
	var mac [6]byte
	copy(mac[:], x.l.mac)
	key := o.Key
	if key == 0 {
		key = derivedKey(x.l.name)
	}
	c := lacp.DefaultConfig(mac, key)
	c.SystemPriority = o.SystemPriority
	c.Active = !o.Passive
	c.FastRate = o.FastRate
	c.MaxPorts = o.MaxPorts
	c.MultiSpeed = o.MultiSpeed
	c.MinPorts = o.MinPorts
	c.Fallback = o.Fallback
	return c
}

// SendPDU implements lacp.Output.
func (x *protoLACP) SendPDU(id lacp.PortID, frame []byte) {
	for _, p := range x.l.ports {
		if lacpPortID(p) == id {
			if err := p.sendFrame(frame); err != nil {
				x.l.log.Debug("LACPDU not sent", "port", p.name, "err", err)
			}
			return
		}
	}
}

func (x *protoLACP) start(l *Lagg) {
	x.l = l
	e, err := lacp.NewEngine(x.config(), x, time.Now())
	if err != nil {
		// Options are validated before they reach here; an engine that
		// cannot start leaves the lagg with no distributing port.
		l.log.Error("lacp cannot start", "err", err)
		return
	}
	x.e = e
}

func (x *protoLACP) stop() { x.e = nil }

// sync re-arms the engine's timer and republishes the distribution when the
// engine's selection changed outside a rebuild the lagg does anyway.
func (x *protoLACP) sync(rebuild bool) {
	if x.e == nil {
		return
	}
	if t, ok := x.e.NextDeadline(); ok {
		x.l.armTimerLocked(t)
	}
	if g := x.e.Generation(); g != x.gen {
		x.gen = g
		if rebuild {
			x.l.rebuildLocked()
		}
	}
}

func (x *protoLACP) portAdded(p *port) {
	if x.e == nil {
		return
	}
	var mac [6]byte
	src := p.origMAC
	if validMAC(src) != nil {
		src = x.l.mac
	}
	copy(mac[:], src)
	if err := x.e.AddPort(lacpPortID(p), mac, lacp.PortConfig{Priority: p.prio, SpeedMbps: p.child.SpeedMbps()}, p.active, time.Now()); err != nil {
		x.l.log.Error("lacp: cannot add port", "port", p.name, "err", err)
	}
	x.sync(false)
}

func (x *protoLACP) portRemoved(p *port) {
	if x.e == nil {
		return
	}
	if err := x.e.RemovePort(lacpPortID(p), time.Now()); err != nil {
		x.l.log.Error("lacp: cannot remove port", "port", p.name, "err", err)
	}
	x.sync(false)
}

func (x *protoLACP) portChanged(p *port) {
	if x.e == nil {
		return
	}
	now := time.Now()
	_ = x.e.SetPortPriority(lacpPortID(p), p.prio, now)
	_ = x.e.SetPortLink(lacpPortID(p), p.active, p.child.SpeedMbps(), now)
	x.sync(false)
}

// optionsChanged applies new [lagg.lacp] options (SetLACPOptions).
func (x *protoLACP) optionsChanged() { x.reconfigure() }

// macChanged follows the lagg's MAC: it is the LACP system ID.
func (x *protoLACP) macChanged() { x.reconfigure() }

func (x *protoLACP) reconfigure() {
	if x.e == nil {
		return
	}
	if err := x.e.SetConfig(x.config(), time.Now()); err != nil {
		x.l.log.Error("lacp: options not applied", "err", err)
	}
	x.sync(false)
}

func (x *protoLACP) controlFrame(p *port, frame []byte) bool {
	if x.e == nil {
		return false
	}
	x.e.Receive(lacpPortID(p), frame, time.Now())
	x.sync(true)
	return true
}

func (x *protoLACP) timer(now time.Time) {
	if x.e == nil {
		return
	}
	x.e.Advance(now)
	x.sync(true)
}

func (x *protoLACP) distribute(ports []*port) distribution {
	var d distribution
	if x.e == nil {
		return d
	}
	d.hashed = true
	for _, p := range ports {
		ps, ok := x.e.Port(lacpPortID(p))
		if !ok {
			continue
		}
		if ps.Collecting {
			d.rx |= p.bit()
		}
		if ps.Distributing {
			d.tx = append(d.tx, p)
		}
	}
	// Below min_ports (or with no partner and no fallback) the lagg is down
	// and sends nothing, though the ports keep their LACP state.
	d.up = x.e.Status().Up
	return d
}

func (x *protoLACP) portFlags(p *port, d *distribution) PortFlags {
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

func (x *protoLACP) status(st *Status) {
	if x.e == nil {
		return
	}
	s := x.e.Status()
	st.LACP = &s
	for i := range st.Ports {
		for _, p := range x.l.ports {
			if p.name != st.Ports[i].Name {
				continue
			}
			if ps, ok := x.e.Port(lacpPortID(p)); ok {
				st.Ports[i].LACP = &ps
			}
		}
	}
}
