package lagg

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ProtoBroadcast (FreeBSD's broadcast) sends every frame on every active
// port and receives on all of them: for links that must not lose a frame,
// with a peer that removes the duplicates (or protocols that tolerate them).
const ProtoBroadcast Proto = "broadcast"

type protoBroadcast struct{ baseProtocol }

func init() { registerProtocol(ProtoBroadcast, 5, func() protocol { return protoBroadcast{} }) }

func (protoBroadcast) distribute(c *protoCtx) distribution {
	return overActive(c, func(tx []*port) transmitter { return broadcastTx{tx} })
}

type broadcastTx struct{ ports []*port }

// transmit sends pkts on every port (ports copy what they send, so they may
// share the packets). A frame counts as sent when one port sent it; the
// error is the last port's when none sent them all.
func (t broadcastTx) transmit(s *snapshot, pkts stack.PacketBufferList) (int, tcpip.Error) {
	best := 0
	var err tcpip.Error
	for _, p := range t.ports {
		n, perr := p.write(s, pkts)
		best = max(best, n)
		if perr != nil {
			err = perr
		}
	}
	if best == pkts.Len() {
		err = nil
	}
	return best, err
}

// portFor implements transmitter: every frame leaves on every port.
func (broadcastTx) portFor(*stack.PacketBuffer) *port { return nil }
