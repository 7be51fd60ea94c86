package lagg

// loadbalance spreads flows over the active ports by flow hash and receives
// on all of them. The transmit set holds only active ports and is rebuilt on
// every change, so there is no stale port count (NetBSD's lagg_lb_stopport)
// and no division by zero.
type protoLoadbalance struct{ baseProtocol }

func init() { registerProtocol("loadbalance", func() protocol { return &protoLoadbalance{} }) }

func (*protoLoadbalance) distribute(ports []*port) distribution {
	d := distribution{tx: activePorts(ports), hashed: true}
	for _, p := range d.tx {
		d.rx |= p.bit()
	}
	d.up = len(d.tx) > 0
	return d
}

func (*protoLoadbalance) portFlags(p *port, d *distribution) PortFlags { return commonPortFlags(p, d) }
