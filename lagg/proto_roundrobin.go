package lagg

import (
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ProtoRoundRobin (FreeBSD's roundrobin) sends each frame on the next active
// port in turn, Config.RoundRobin.Stride frames per port (FreeBSD's
// rr_limit), and receives on every active port. It spreads even one flow
// over every port, at the price of reordering its segments.
const ProtoRoundRobin Proto = "roundrobin"

type protoRoundRobin struct{ baseProtocol }

func init() { registerProtocol(ProtoRoundRobin, 4, func() protocol { return protoRoundRobin{} }) }

func (protoRoundRobin) distribute(c *protoCtx) distribution {
	return overActive(c, func(tx []*port) transmitter {
		t := &roundRobinTx{ports: tx, stride: uint64(c.cfg.RoundRobin.Stride), next: new(atomic.Uint64)}
		if old, ok := c.prev.tx.(*roundRobinTx); ok {
			t.next = old.next // the turn goes on where it was
		}
		return t
	})
}

// roundRobinTx counts frames with one atomic shared by all senders.
type roundRobinTx struct {
	ports  []*port
	stride uint64
	next   *atomic.Uint64
}

func (t *roundRobinTx) pick(*stack.PacketBuffer) *port {
	n := t.next.Add(1) - 1
	return t.ports[n/t.stride%uint64(len(t.ports))]
}

// portFor implements transmitter: frames take turns, so no one port.
func (t *roundRobinTx) portFor(*stack.PacketBuffer) *port { return nil }

func (t *roundRobinTx) transmit(s *snapshot, pkts stack.PacketBufferList) (int, tcpip.Error) {
	return transmitPicked(s, t, pkts)
}
