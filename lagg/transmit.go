package lagg

import (
	"slices"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// A transmitter is a protocol's per-frame transmit decision (NetBSD's
// pr_transmit). The protocol builds it on the control path; once published
// in a snapshot it is immutable: transmit may read only its own fields (and
// atomics it owns), and must neither lock nor allocate.
type transmitter interface {
	// transmit sends pkts, complete frames whose references the caller
	// keeps, and returns how many were sent.
	transmit(s *snapshot, pkts stack.PacketBufferList) (int, tcpip.Error)
	// portFor returns the port pkt would leave on, or nil when it would
	// leave on none or on several. It changes nothing.
	portFor(pkt *stack.PacketBuffer) *port
}

// singleTx sends everything on one port (failover; any protocol with one
// transmitting port).
type singleTx struct{ p *port }

func (t singleTx) transmit(s *snapshot, pkts stack.PacketBufferList) (int, tcpip.Error) {
	return t.p.write(s, pkts)
}

func (t singleTx) portFor(*stack.PacketBuffer) *port { return t.p }

// hashedTx places each flow on one port by its symmetric hash, through a
// flow table that fills the ports evenly (loadbalance, lacp).
type hashedTx struct {
	ports  []*port
	flows  *flowTable
	layers HashLayers
}

// newHashedTx returns a hashing transmitter over ports; with the same ports
// as prev's, flows stay where they are. With one port it is a singleTx.
func newHashedTx(ports []*port, layers HashLayers, prev *distribution) transmitter {
	switch len(ports) {
	case 0:
		return nil
	case 1:
		return singleTx{ports[0]}
	}
	t := &hashedTx{ports: ports, layers: layers, flows: new(flowTable)}
	if prev != nil {
		if old, ok := prev.tx.(*hashedTx); ok && slices.Equal(old.ports, ports) {
			t.flows = old.flows
		}
	}
	return t
}

func (t *hashedTx) portFor(pkt *stack.PacketBuffer) *port {
	return t.ports[t.flows.port(hashPacket(pkt, t.layers), len(t.ports))]
}

func (t *hashedTx) pick(pkt *stack.PacketBuffer) *port { return t.portFor(pkt) }

func (t *hashedTx) transmit(s *snapshot, pkts stack.PacketBufferList) (int, tcpip.Error) {
	return transmitPicked(s, t, pkts)
}

// age unbinds idle flow buckets; the control goroutine calls it.
func (t *hashedTx) age() { t.flows.age() }

// A picker chooses a port per frame; pick may advance state of its own.
type picker interface {
	pick(pkt *stack.PacketBuffer) *port
}

// txBatch is the scratch space that splits a batch by port.
type txBatch struct {
	inUse atomic.Bool
	picks [txBatchMax]*port
	lists [MaxPorts]stack.PacketBufferList
	used  [MaxPorts]*port
}

const txBatchMax = 64

// txBatches are claimed by whoever transmits a batch; the lists keep their
// capacity, so splitting allocates nothing once each has been used. A fixed
// set rather than a sync.Pool, which may drop what it is given.
var txBatches [16]txBatch

func getTxBatch() *txBatch {
	for i := range txBatches {
		if b := &txBatches[i]; !b.inUse.Load() && b.inUse.CompareAndSwap(false, true) {
			return b
		}
	}
	return new(txBatch) // more concurrent senders than slots
}

func (b *txBatch) put() { b.inUse.Store(false) }

// transmitPicked sends each frame of pkts on the port pk picks for it, the
// frames for one port together and in their order, so a port sends a batch
// in one go. Frames on ports before a port that fails are sent; the count
// returned is how many were sent in all, and the first error is returned.
// It allocates nothing once the pool is warm.
func transmitPicked(s *snapshot, pk picker, pkts stack.PacketBufferList) (int, tcpip.Error) {
	all := pkts.AsSlice()
	if len(all) == 1 {
		p := pk.pick(all[0])
		if p == nil {
			s.lagg.ctr.drop(DropNoPort, 1)
			return 0, &tcpip.ErrNoBufferSpace{}
		}
		return p.write(s, pkts)
	}
	b := getTxBatch()
	defer b.put()
	sent := 0
	var firstErr tcpip.Error
	for len(all) > 0 {
		chunk := all[:min(len(all), txBatchMax)]
		all = all[len(chunk):]
		nused, unpicked := 0, 0
		for i, pkt := range chunk {
			p := pk.pick(pkt)
			b.picks[i] = p
			if p == nil {
				unpicked++
			} else if !slices.Contains(b.used[:nused], p) {
				b.used[nused] = p
				nused++
			}
		}
		if unpicked > 0 {
			s.lagg.ctr.drop(DropNoPort, unpicked)
			if firstErr == nil {
				firstErr = &tcpip.ErrNoBufferSpace{}
			}
		}
		for u, p := range b.used[:nused] {
			l := &b.lists[u]
			for i, pkt := range chunk {
				if b.picks[i] == p {
					l.PushBack(pkt.IncRef()) // Reset below gives the reference back
				}
			}
			n, err := p.write(s, *l)
			sent += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
			l.Reset()
			b.used[u] = nil
		}
		clear(b.picks[:len(chunk)])
	}
	return sent, firstErr
}
