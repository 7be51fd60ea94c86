package lagg

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Proto names an aggregation protocol.
type Proto string

// protocol is one aggregation protocol, after NetBSD's lagg_proto ops table.
// Adding a protocol is one file that implements it and registers itself in
// init with registerProtocol.
//
// Every method runs on the control path with Lagg.mu held and gets all it
// may use through its arguments: the settings, the MAC, the ports, the clock
// and the means to act are in the protoCtx; a protocol has no way back to
// the Lagg. None may block. The data path never calls a protocol: it calls
// the transmitter and reads the receive set the protocol last produced in
// distribute, from the lagg's snapshot.
type protocol interface {
	// attach makes the protocol the lagg's; the lagg's ports follow, one
	// portAdded each.
	attach(c *protoCtx)
	// detach ends it; the ports stay in the lagg.
	detach(c *protoCtx)
	// portAdded and portRemoved bracket a port's membership.
	portAdded(c *protoCtx, p *port)
	portRemoved(c *protoCtx, p *port)
	// portChanged reports a change of link state, priority or speed.
	portChanged(c *protoCtx, p *port)
	// configChanged reports a change of the lagg's settings or MAC.
	configChanged(c *protoCtx)
	// distribute says who transmits and who may receive now.
	distribute(c *protoCtx) distribution
	// input handles a slow-protocols frame (EtherType 0x8809) that arrived
	// on p; frame is the whole Ethernet frame and is the protocol's to keep.
	// It reports false if it has no use for such frames.
	input(c *protoCtx, p *port, frame []byte) bool
	// timer runs once the deadline the protocol armed (protoCtx.arm) passed.
	timer(c *protoCtx)
	// portFlags reports a port's flags for status.
	portFlags(p *port, d *distribution) PortFlags
	// status adds protocol details to a lagg's status.
	status(c *protoCtx, st *Status)
}

// protoCtx is what a protocol sees of its lagg during one call, built by the
// lagg under Lagg.mu and valid for that call only.
type protoCtx struct {
	name  string
	cfg   *Config
	mac   tcpip.LinkAddress
	ports []*port       // in priority order, then insertion order
	prev  *distribution // the distribution published now
	now   time.Time
	log   *slog.Logger

	// What the protocol asks of the lagg; the lagg acts once the call returns.
	deadline  time.Time // arm: call timer at this time
	armed     bool
	rebuild   bool    // the distribution changed outside a port or config change
	events    []Event // to deliver to the lagg's event handler
	sendFrame func(p *port, frame []byte) error
}

// arm asks for a timer call at deadline, replacing any earlier request.
func (c *protoCtx) arm(deadline time.Time) { c.deadline, c.armed = deadline, true }

// send transmits a whole Ethernet frame (an LACPDU, a marker) on p,
// whatever the distribution.
func (c *protoCtx) send(p *port, frame []byte) error { return c.sendFrame(p, frame) }

// event queues an event for the lagg's handler.
func (c *protoCtx) event(ev Event) {
	ev.Lagg, ev.Time = c.name, c.now
	c.events = append(c.events, ev)
}

// distribution is a protocol's answer to "who transmits, who may receive".
type distribution struct {
	tx      transmitter // nil: nothing transmits
	txPorts []*port     // every port tx may use, for status
	primary *port       // the one transmitting port of failover; its change is a failover
	rx      uint64      // bit i set: the port in slot i may receive
	up      bool        // the lagg's link is up
}

func (d *distribution) transmits(p *port) bool { return slices.Contains(d.txPorts, p) }

type protoInfo struct {
	name Proto
	rank int // place in Protocols: the order users read them in
	new  func() protocol
}

var protocols struct {
	sync.RWMutex
	// +checklocks:RWMutex
	m map[Proto]protoInfo
}

// registerProtocol makes a protocol available under name.
func registerProtocol(name Proto, rank int, ctor func() protocol) {
	protocols.Lock()
	defer protocols.Unlock()
	if protocols.m == nil {
		protocols.m = map[Proto]protoInfo{}
	}
	protocols.m[name] = protoInfo{name: name, rank: rank, new: ctor}
}

// Protocols returns the names of the protocols this build has.
func Protocols() []Proto {
	protocols.RLock()
	defer protocols.RUnlock()
	infos := make([]protoInfo, 0, len(protocols.m))
	for _, pi := range protocols.m {
		infos = append(infos, pi)
	}
	slices.SortFunc(infos, func(a, b protoInfo) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		return strings.Compare(string(a.name), string(b.name))
	})
	names := make([]Proto, len(infos))
	for i, pi := range infos {
		names[i] = pi.name
	}
	return names
}

// ProtocolNames returns Protocols as strings, for messages and validation.
func ProtocolNames() []string {
	ps := Protocols()
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = string(p)
	}
	return names
}

func lookupProtocol(name Proto) (func() protocol, error) {
	protocols.RLock()
	pi, ok := protocols.m[name]
	protocols.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown protocol %q (have %s)", name, strings.Join(ProtocolNames(), ", "))
	}
	return pi.new, nil
}

// activePorts returns the ports whose link counts as up, keeping their order.
func activePorts(ports []*port) []*port {
	var out []*port
	for _, p := range ports {
		if p.usable() {
			out = append(out, p)
		}
	}
	return out
}

// overActive is the distribution of the protocols that transmit and
// receive on every active port: one port sends everything, several send
// through the transmitter many builds.
func overActive(c *protoCtx, many func(tx []*port) transmitter) distribution {
	tx := activePorts(c.ports)
	d := distribution{txPorts: tx, rx: rxBits(tx), up: len(tx) > 0}
	switch len(tx) {
	case 0:
	case 1:
		d.tx = singleTx{tx[0]}
	default:
		d.tx = many(tx)
	}
	return d
}

// rxBits is the receive set of ports.
func rxBits(ports []*port) uint64 {
	var rx uint64
	for _, p := range ports {
		rx |= p.bit()
	}
	return rx
}

// baseProtocol gives the methods most protocols leave empty.
type baseProtocol struct{}

func (baseProtocol) attach(*protoCtx)                             {}
func (baseProtocol) detach(*protoCtx)                             {}
func (baseProtocol) portAdded(*protoCtx, *port)                   {}
func (baseProtocol) portRemoved(*protoCtx, *port)                 {}
func (baseProtocol) portChanged(*protoCtx, *port)                 {}
func (baseProtocol) configChanged(*protoCtx)                      {}
func (baseProtocol) input(*protoCtx, *port, []byte) bool          { return false }
func (baseProtocol) timer(*protoCtx)                              {}
func (baseProtocol) status(*protoCtx, *Status)                    {}
func (baseProtocol) portFlags(p *port, d *distribution) PortFlags { return commonPortFlags(p, d) }

// commonPortFlags are the flags of the protocols without LACP: a
// transmitting port is ACTIVE|COLLECTING|DISTRIBUTING, a receiving one
// COLLECTING.
func commonPortFlags(p *port, d *distribution) PortFlags {
	var f PortFlags
	if p.usable() {
		f |= PortActive
	}
	if d.rx&p.bit() != 0 {
		f |= PortCollecting
	}
	if d.transmits(p) {
		f |= PortDistributing
	}
	return f
}
