package lagg

// ProtoLoadBalance spreads flows over the active ports by flow hash and
// receives on all of them. The transmit set holds only active ports and is
// rebuilt on every change, so there is no stale port count (NetBSD's
// lagg_lb_stopport) and no division by zero.
const ProtoLoadBalance Proto = "loadbalance"

type protoLoadbalance struct{ baseProtocol }

func init() { registerProtocol(ProtoLoadBalance, 2, func() protocol { return protoLoadbalance{} }) }

func (protoLoadbalance) distribute(c *protoCtx) distribution {
	return overActive(c, func(tx []*port) transmitter { return newHashedTx(tx, c.cfg.Hash, c.prev) })
}
