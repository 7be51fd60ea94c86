package lagg

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// protocol is one aggregation protocol, after NetBSD's lagg_proto ops table.
// Adding a protocol is one file that implements it and registers a
// constructor in init.
//
// Every method runs on the control path with Lagg.mu held; none may block or
// call back into a port. The data path never calls a protocol: it reads the
// distribution the protocol last produced from the lagg's snapshot.
type protocol interface {
	// start makes the protocol the lagg's, with the lagg's ports present.
	start(l *Lagg)
	// stop ends it; the ports stay in the lagg.
	stop()
	// portAdded and portRemoved bracket a port's membership.
	portAdded(p *port)
	portRemoved(p *port)
	// portChanged reports a change of link state, priority or speed.
	portChanged(p *port)
	// distribute says who transmits and who may receive, given the ports in
	// priority order.
	distribute(ports []*port) distribution
	// controlFrame handles a slow-protocols frame (EtherType 0x8809) that
	// arrived on p; frame is the whole Ethernet frame and is the protocol's
	// to keep. It reports false if it has no use for such frames.
	controlFrame(p *port, frame []byte) bool
	// timer runs when the deadline the protocol armed (Lagg.armTimerLocked)
	// has passed.
	timer(now time.Time)
	// portFlags reports a port's flags for status.
	portFlags(p *port, d *distribution) PortFlags
	// status adds protocol details to a lagg's status.
	status(st *Status)
}

// distribution is a protocol's answer to "who transmits, who may receive".
type distribution struct {
	tx     []*port // ports that transmit, in order
	hashed bool    // pick tx[hash]; otherwise always tx[0]
	rx     uint64  // bit i set: the port in slot i may receive
	up     bool    // the lagg's link is up
}

// protoNames lists the protocols in the order users read them.
var protoNames = []string{"none", "failover", "loadbalance", "lacp"}

var protocols = map[string]func() protocol{}

func registerProtocol(name string, ctor func() protocol) { protocols[name] = ctor }

// Protocols returns the names of the protocols this build has.
func Protocols() []string {
	var names, extra []string
	for _, n := range protoNames {
		if protocols[n] != nil {
			names = append(names, n)
		}
	}
	for n := range protocols {
		if !slices.Contains(protoNames, n) {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	return append(names, extra...)
}

func newProtocol(name string) (protocol, error) {
	if name == "" {
		name = "none"
	}
	ctor := protocols[name]
	if ctor == nil {
		return nil, fmt.Errorf("unknown protocol %q (have %s)", name, strings.Join(Protocols(), ", "))
	}
	return ctor(), nil
}

// activePorts returns the ports whose link counts as up, keeping their order.
func activePorts(ports []*port) []*port {
	var out []*port
	for _, p := range ports {
		if p.active {
			out = append(out, p)
		}
	}
	return out
}

// baseProtocol gives the methods most protocols leave empty.
type baseProtocol struct{}

func (baseProtocol) start(*Lagg)                     {}
func (baseProtocol) stop()                           {}
func (baseProtocol) portAdded(*port)                 {}
func (baseProtocol) portRemoved(*port)               {}
func (baseProtocol) portChanged(*port)               {}
func (baseProtocol) controlFrame(*port, []byte) bool { return false }
func (baseProtocol) timer(time.Time)                 {}
func (baseProtocol) status(*Status)                  {}

// commonPortFlags are failover's and loadbalance's flags: a transmitting
// port is ACTIVE|COLLECTING|DISTRIBUTING, a receiving one COLLECTING.
func commonPortFlags(p *port, d *distribution) PortFlags {
	var f PortFlags
	if p.active {
		f |= PortActive
	}
	if d.rx&p.bit() != 0 {
		f |= PortCollecting
	}
	for _, t := range d.tx {
		if t == p {
			f |= PortDistributing
		}
	}
	return f
}
