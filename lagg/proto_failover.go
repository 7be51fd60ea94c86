package lagg

// ProtoFailover transmits on the active port with the smallest priority
// value and takes the better port back as soon as it returns (pre-emptive).
// It receives on every active port with rx-all (the default), else only on
// the transmitting port.
const ProtoFailover Proto = "failover"

type protoFailover struct{ baseProtocol }

func init() { registerProtocol(ProtoFailover, 1, func() protocol { return protoFailover{} }) }

func (protoFailover) distribute(c *protoCtx) distribution {
	for _, p := range c.ports {
		if !p.usable() {
			continue
		}
		d := distribution{tx: singleTx{p}, txPorts: []*port{p}, primary: p, rx: p.bit(), up: true}
		if c.cfg.RxAll {
			d.rx = rxBits(activePorts(c.ports))
		}
		return d
	}
	return distribution{}
}

func (protoFailover) status(c *protoCtx, st *Status) {
	st.Failover = &FailoverStatus{RxAll: c.cfg.RxAll}
}
