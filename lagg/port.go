package lagg

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/linkep"
)

// port is one member of a lagg. It is also the dispatcher its child
// delivers to, which is how the lagg knows where a frame came in.
type port struct {
	l        *Lagg
	child    linkep.Port
	name     string
	identity string // the interface behind the port, unique on the host
	slot     int    // bit in snapshot.rx; fixed for the port's life
	seq      uint64 // insertion order, breaks priority ties

	origMAC tcpip.LinkAddress
	origMTU uint32

	ctr counters

	// Guarded by l.mu.
	prio     uint16
	linkUp   bool        // what the child reports
	active   bool        // linkUp after the up/down delay
	delay    *time.Timer // pending up/down delay
	attached bool
	dead     bool // detached by Attach(nil): never attached again
	removed  bool
	proto    any // the protocol's per-port state
}

var _ stack.NetworkDispatcher = (*port)(nil)

func (p *port) bit() uint64 { return 1 << p.slot }

// write sends pkts on this port and counts them. The caller keeps its
// references.
func (p *port) write(s *snapshot, pkts stack.PacketBufferList) (int, tcpip.Error) {
	bytes := 0
	for _, pkt := range pkts.AsSlice() {
		bytes += pkt.Size()
	}
	if cs := p.l.capture.cur.Load(); cs != nil {
		for _, pkt := range pkts.AsSlice() {
			cs.deliver(p, Out, pkt)
		}
	}
	n, err := p.child.WritePackets(pkts)
	if n > 0 {
		p.ctr.tx(n, bytes)
		p.l.ctr.tx(n, bytes)
		if fc := s.failover; fc != nil && fc.port == p && !fc.done.Load() && fc.done.CompareAndSwap(false, true) {
			p.l.failoverDone(fc)
		}
	}
	if err != nil {
		dropped := pkts.Len() - n
		p.ctr.drop(DropTxError, dropped)
		p.l.ctr.drop(DropTxError, dropped)
	}
	return n, err
}

func (l *Lagg) failoverDone(fc *failoverClock) {
	d := time.Since(fc.start)
	l.lastFailover.Store(int64(d))
	l.log.Info("failover complete: first frame on the new port", "port", fc.port.name, "after", d)
}

// DeliverNetworkPacket implements stack.NetworkDispatcher: the per-frame
// receive accept.
func (p *port) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	l := p.l
	if proto == EtherTypeSlowProtocols {
		l.controlInput(p, pkt)
		return
	}
	s := l.snap.Load()
	if s.rx&p.bit() == 0 {
		p.ctr.drop(DropInactivePort, 1)
		l.ctr.drop(DropInactivePort, 1)
		return
	}
	d := s.dispatcher
	if d == nil {
		p.ctr.drop(DropNotAttached, 1)
		l.ctr.drop(DropNotAttached, 1)
		return
	}
	if cs := l.capture.cur.Load(); cs != nil {
		cs.deliver(p, In, pkt)
	}
	size := pkt.Size()
	p.ctr.rx(size)
	l.ctr.rx(size)
	d.DeliverNetworkPacket(proto, pkt)
}

// DeliverLinkPacket implements stack.NetworkDispatcher (packet sockets).
func (p *port) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	s := p.l.snap.Load()
	if s.rx&p.bit() != 0 && s.dispatcher != nil {
		s.dispatcher.DeliverLinkPacket(proto, pkt)
	}
}
