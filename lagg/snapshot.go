package lagg

import (
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// snapshot is what the data path reads: built by rebuildLocked, immutable
// once published (NetBSD's lagg_variant under pserialize).
type snapshot struct {
	lagg       *Lagg
	dist       distribution
	mac        tcpip.LinkAddress
	caps       stack.LinkEndpointCapabilities
	gso        stack.SupportedGSO
	gsoMax     uint32
	dispatcher stack.NetworkDispatcher
	vlans      *vlanTable     // the VLAN interfaces by VID (vlan_endpoint.go); nil: none
	failover   *failoverClock // set while the first frame on a new primary is awaited
	mon        *monSnap       // the ports' own MACs and the link monitor's receive side (monitor_rx.go)
}

// failoverClock times a failover: from carrier loss to the first frame the
// new transmit port sends.
type failoverClock struct {
	start time.Time
	from  string
	port  *port
	done  atomic.Bool
}

// rebuildLocked asks the protocol for a new distribution and publishes it,
// then queues what peers and the event handler must learn of the change.
//
// +checklocks:l.mu
func (l *Lagg) rebuildLocked() {
	old := l.snap.Load()
	c := l.ctxLocked()
	d := l.proto.distribute(c)
	l.finishLocked(c)
	if !d.up || d.tx == nil {
		d.up = false
	}
	s := &snapshot{lagg: l, dist: d, mac: l.mac, dispatcher: l.dispatcher, vlans: l.vlans}
	s.caps, s.gso, s.gsoMax = l.capabilitiesLocked()
	s.mon = l.monitorSnapLocked(&d)
	// Announce only once s is published: the announcement is sent through
	// the data path and must leave on the new port with the new MAC.
	announce := false
	now := l.clock.Now()
	if old != nil {
		if op, np := old.dist.primary, d.primary; op != nil && np != nil && op != np {
			l.failovers++
			n := l.failovers
			// A failover is timed from the carrier loss that caused it; a
			// pre-emption or a priority change from now.
			start := now
			if !op.active && !l.lossAt.IsZero() {
				start = l.lossAt
			}
			s.failover = &failoverClock{start: start, from: op.name, port: np}
			l.log.Info("transmit port changed", "from", op.name, "to", np.name, "failovers", n)
			l.emit(Event{Kind: EventFailover, From: op.name, Port: np.name})
			announce = true
		}
		if old.mac != s.mac {
			announce = true
		}
		if old.dist.up != d.up {
			l.log.Info("lagg link changed", "link", upDown(d.up))
			l.emit(Event{Kind: EventLaggLink, Up: d.up})
			announce = announce || d.up
		}
		if s.failover == nil && old.failover != nil && !old.failover.done.Load() && d.primary == old.failover.port {
			s.failover = old.failover // still waiting for the first frame
		}
	}
	if d.primary != nil && old != nil && old.dist.primary != d.primary {
		l.lossAt = time.Time{}
	}
	l.dist = d
	l.snap.Store(s)
	if announce {
		l.requestAnnounce()
	}
}

// capabilitiesLocked is the AND of the ports' capabilities plus address
// resolution and RX checksum offload, and the GSO kind all ports share. RX
// checksum offload is the lagg's own: it verifies in software every
// checksum the port did not vouch for (csum.go), so gVisor need not.
//
// +checklocks:l.mu
func (l *Lagg) capabilitiesLocked() (stack.LinkEndpointCapabilities, stack.SupportedGSO, uint32) {
	const own = stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload
	if len(l.ports) == 0 {
		return own, stack.GSONotSupported, 0
	}
	caps := ^stack.LinkEndpointCapabilities(0)
	gso, gsoMax := stack.SupportedGSO(-1), uint32(0)
	for _, p := range l.ports {
		caps &= p.child.Capabilities()
		g, ok := p.child.(stack.GSOEndpoint)
		switch {
		case !ok || g.SupportedGSO() == stack.GSONotSupported:
			gso = stack.GSONotSupported
		case gso == -1:
			gso, gsoMax = g.SupportedGSO(), g.GSOMaxSize()
		case gso != g.SupportedGSO():
			gso = stack.GSONotSupported
		default:
			gsoMax = min(gsoMax, g.GSOMaxSize())
		}
	}
	caps &^= stack.CapabilityLoopback | stack.CapabilitySaveRestore
	caps |= own
	if gso == stack.GSONotSupported {
		gsoMax = 0
	}
	return caps, gso, gsoMax
}
