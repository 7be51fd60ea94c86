package lagg

import (
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

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

	alarms lacp.Alarms // as last logged
	logs   logLimit
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
	ec.Select, _ = o.Select.policy() // validated: an error cannot happen
	return ec
}

// SendPDU implements lacp.Output; the engine calls it only inside the calls
// below, while x.c is set.
func (x *protoLACP) SendPDU(id lacp.PortID, frame []byte) {
	for _, p := range x.c.ports {
		if lacpPortID(p) == id {
			if err := x.c.send(p, frame); err != nil {
				if ok, held := x.logs.allow("send", x.c.now); ok {
					x.c.log.Debug("LACPDU not sent", "port", p.name, "err", err, "suppressed", held)
				}
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
	x.logAlarms(c)
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
	_ = x.e.SetPortAdminDown(lacpPortID(p), p.disabled, c.now)
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
	_ = x.e.SetPortAdminDown(lacpPortID(p), p.disabled, c.now)
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
	if best, ok := x.e.FallbackPort(); ok {
		return x.distributeFallback(c, best)
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
		// In fallback every port may transmit; DISTRIBUTING is the one that
		// does now.
		if ft, ok := d.tx.(*fallbackTx); !ps.Fallback || ok && ft.port() == p {
			f |= PortDistributing
		}
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

// distributeFallback is the distribution while no port has or may get a
// partner: every fallback port (link up, not looped) collects, and frames
// leave on the port the partner's traffic last arrived on — a partner
// without LACP (an active-backup bond, a switch that learned our MAC on one
// port) accepts us there — or on the best port until anything arrived.
func (x *protoLACP) distributeFallback(c *protoCtx, best lacp.PortID) distribution {
	var d distribution
	for _, p := range c.ports {
		ps, ok := x.e.Port(lacpPortID(p))
		if !ok || !ps.Fallback {
			continue
		}
		d.rx |= p.bit()
		if ps.ID == best {
			d.txPorts = slices.Insert(d.txPorts, 0, p)
		} else {
			d.txPorts = append(d.txPorts, p)
		}
	}
	if len(d.txPorts) == 0 {
		return distribution{}
	}
	d.tx = newFallbackTx(d.txPorts, c.prev)
	d.up = x.e.Status().Up
	return d
}

// fallbackTx is lacp's transmitter in fallback. It sends everything on one
// port: the one the partner's traffic last arrived on, which the receive
// path reports through noteRx (rxhook.go) with one atomic store, or the
// best port until anything arrived. Every port in it collects.
type fallbackTx struct {
	ports []*port // the fallback ports, the best first
	last  atomic.Pointer[port]
}

// newFallbackTx returns a fallbackTx over ports, keeping prev's last
// receive port if it is among them.
func newFallbackTx(ports []*port, prev *distribution) *fallbackTx {
	t := &fallbackTx{ports: ports}
	if prev != nil {
		if old, ok := prev.tx.(*fallbackTx); ok {
			if p := old.last.Load(); p != nil && slices.Contains(ports, p) {
				t.last.Store(p)
			}
		}
	}
	return t
}

// heard records that a frame arrived on p, one of t's ports.
func (t *fallbackTx) heard(p *port) {
	if t.last.Load() != p {
		t.last.Store(p)
	}
}

// port is where frames leave now.
func (t *fallbackTx) port() *port {
	if p := t.last.Load(); p != nil {
		return p
	}
	return t.ports[0]
}

func (t *fallbackTx) transmit(s *snapshot, pkts stack.PacketBufferList) (int, tcpip.Error) {
	return t.port().write(s, pkts)
}

func (t *fallbackTx) portFor(*stack.PacketBuffer) *port { return t.port() }

// lacpLogEvery is how often one kind of LACP log line may appear per lagg:
// what a partner can trigger at wire speed must not flood the log.
const lacpLogEvery = 10 * time.Second

// logLimit lets one line of a kind out per lacpLogEvery and counts the ones
// it holds back, for the next line of that kind to report. It is a stand-in
// for the shared rate-limited logger being built; times come from the
// lagg's clock.
type logLimit struct {
	last map[string]time.Time
	held map[string]int
}

// allow reports whether a line of kind may be logged at now, and how many
// were held back since the last one.
func (l *logLimit) allow(kind string, now time.Time) (ok bool, held int) {
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
	}
	if t, seen := l.last[kind]; seen && now.Sub(t) < lacpLogEvery {
		l.held[kind]++
		return false, 0
	}
	held = l.held[kind]
	l.last[kind], l.held[kind] = now, 0
	return true, held
}

// logAlarms logs what the partners raised since the last call — links to
// more than one partner system, looped ports — each kind at most once per
// lacpLogEvery. Status, JSON and metrics carry the alarms themselves.
func (x *protoLACP) logAlarms(c *protoCtx) {
	a := x.e.Alarms()
	was := x.alarms
	if a == was {
		return
	}
	x.alarms = a
	switch {
	case a.PartnerSystems > 1 && (was.PartnerSystems <= 1 || a.Mismatches != was.Mismatches || a.PartnerSystems != was.PartnerSystems):
		if ok, held := x.logs.allow("partners", c.now); ok {
			st := x.e.Status()
			c.log.Warn("lacp: ports see different partner systems: some links go to another device or LAG group (miscabled or rogue); only the active aggregator carries traffic",
				"partners", x.partnersAttr(c, &st), "active", lacpSystemString(st.Partner), "select", st.Select,
				"raised", a.Mismatches, "suppressed", held)
		}
	case a.PartnerSystems <= 1 && was.PartnerSystems > 1:
		if ok, held := x.logs.allow("partners-cleared", c.now); ok {
			c.log.Info("lacp: ports see one partner system again", "suppressed", held)
		}
	}
	if a.Loops > was.Loops && a.LoopedPorts > 0 {
		if ok, held := x.logs.allow("looped", c.now); ok {
			var names []string
			for _, p := range c.ports {
				if ps, ok := x.e.Port(lacpPortID(p)); ok && ps.Looped {
					names = append(names, p.name)
				}
			}
			c.log.Warn("lacp: looped ports: our own LACPDUs come back on them (cabled to another port of ours?); they carry no traffic",
				"ports", strings.Join(names, ","), "suppressed", held)
		}
	}
}

// partnersAttr lists each partner system with the ports that see it.
func (x *protoLACP) partnersAttr(c *protoCtx, st *lacp.Status) slog.Value {
	var parts []string
	for _, ag := range st.Aggregators {
		var names []string
		for _, id := range ag.Ports {
			for _, p := range c.ports {
				if lacpPortID(p) == id {
					names = append(names, p.name)
				}
			}
		}
		parts = append(parts, fmt.Sprintf("%s on %s", lacpSystemString(ag.Partner), strings.Join(names, ",")))
	}
	return slog.StringValue(strings.Join(parts, "; "))
}

func lacpSystemString(k lacp.SystemKey) string {
	return fmt.Sprintf("%d,%s,%d", k.SystemPriority, net.HardwareAddr(k.System[:]), k.Key)
}
