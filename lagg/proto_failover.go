package lagg

// failover transmits on the active port with the smallest priority value and
// takes the better port back as soon as it returns (pre-emptive). It
// receives on every active port with rx-all (the default), else only on the
// transmitting port.
type protoFailover struct {
	baseProtocol
	l *Lagg
}

func init() { registerProtocol("failover", func() protocol { return &protoFailover{} }) }

func (f *protoFailover) start(l *Lagg) { f.l = l }

func (f *protoFailover) distribute(ports []*port) distribution {
	for _, p := range ports {
		if !p.active {
			continue
		}
		d := distribution{tx: []*port{p}, up: true}
		if f.l.opts.rxAll {
			for _, q := range ports {
				if q.active {
					d.rx |= q.bit()
				}
			}
		} else {
			d.rx = p.bit()
		}
		return d
	}
	return distribution{}
}

func (*protoFailover) portFlags(p *port, d *distribution) PortFlags { return commonPortFlags(p, d) }

func (f *protoFailover) status(st *Status) {
	rx := f.l.opts.rxAll
	st.Failover = &FailoverStatus{RxAll: rx}
}
