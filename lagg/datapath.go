package lagg

import (
	"encoding/binary"
	"fmt"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The per-frame paths. Each loads the snapshot once and neither locks nor
// allocates: transmit is WritePackets → the protocol's transmitter →
// port.write; receive is the child → port.DeliverNetworkPacket → the stack.

// WritePackets implements stack.LinkEndpoint. The caller keeps its
// references; frames go to ports unchanged.
func (l *Lagg) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	s := l.snap.Load()
	if !s.dist.up {
		l.ctr.drop(DropNoPort, pkts.Len())
		return 0, &tcpip.ErrNoBufferSpace{}
	}
	return s.dist.tx.transmit(s, pkts)
}

// SelectTxPort returns the name of the port that would send pkt now, or ""
// when it would leave on none or on several. It runs the same code as
// WritePackets but moves no state.
func (l *Lagg) SelectTxPort(pkt *stack.PacketBuffer) string {
	s := l.snap.Load()
	if !s.dist.up {
		return ""
	}
	if p := s.dist.tx.portFor(pkt); p != nil {
		return p.name
	}
	return ""
}

// write sends pkts on this port and counts them. The caller keeps its
// references. Frames the port has no room for now wait in its
// backpressure queue (backpressure.go) and count as sent.
func (p *port) write(s *snapshot, pkts stack.PacketBufferList) (int, tcpip.Error) {
	all := pkts.AsSlice()
	if cs := p.l.capture.cur.Load(); cs != nil {
		for _, pkt := range all {
			cs.deliver(p, Out, pkt)
		}
	}
	if p.txq.held.Load() { // frames wait for room: these queue behind them
		return p.holdRest(all)
	}
	n, err := p.child.WritePackets(pkts)
	if n > 0 {
		bytes := 0
		for _, pkt := range all[:n] {
			bytes += pkt.Size()
		}
		p.ctr.tx(n, bytes)
		if fc := s.failover; fc != nil && fc.port == p && !fc.done.Load() && fc.done.CompareAndSwap(false, true) {
			p.l.failoverDone(fc)
		}
	}
	if err != nil {
		if queueFull(err) {
			held, herr := p.holdRest(all[n:])
			return n + held, herr
		}
		p.ctr.drop(DropTxError, len(all)-n)
	}
	return n, err
}

// holdRest queues frames behind those waiting for room on the port and
// returns how many it took; the rest are dropped and counted.
func (p *port) holdRest(frames []*stack.PacketBuffer) (int, tcpip.Error) {
	held := p.hold(frames)
	if held < len(frames) {
		p.ctr.drop(DropTxQueueFull, len(frames)-held)
		return held, &tcpip.ErrNoBufferSpace{}
	}
	return held, nil
}

// DeliverNetworkPacket implements stack.NetworkDispatcher: the per-frame
// receive accept. In order: slow-protocol frames go to the control path
// (validated and queued per port, slowq.go); a port that may not receive
// now, or a lagg no stack is attached to, drops the frame; what is left is
// captured; a tagged frame goes to the VLAN input (vlan.go), never to the
// untagged stack; IPv4 and IPv6 checksums the port did not vouch for are
// verified (csum.go); then the stack gets the frame.
func (p *port) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	l := p.l
	if proto == EtherTypeSlowProtocols {
		l.controlInput(p, pkt)
		return
	}
	s := l.snap.Load()
	if p.monitorInput(s, proto, pkt) { // monitor replies; a port's own MAC (monitor_rx.go)
		return
	}
	if s.dist.rx&p.bit() == 0 {
		p.ctr.drop(DropInactivePort, 1)
		return
	}
	d := s.dispatcher
	if d == nil {
		p.ctr.drop(DropNotAttached, 1)
		return
	}
	if cs := l.capture.cur.Load(); cs != nil {
		cs.deliver(p, In, pkt)
	}
	switch proto {
	case EtherTypeVLAN, EtherTypeQinQ, EtherTypeQinQv1:
		p.vlanInput(s, proto, pkt)
		return
	case header.IPv4ProtocolNumber, header.IPv6ProtocolNumber:
		if !l.verifyRx(proto, pkt) {
			p.ctr.drop(DropChecksum, 1)
			return
		}
	}
	noteRx(s, p) // rxhook.go
	p.ctr.rx(pkt.Size())
	d.DeliverNetworkPacket(proto, pkt)
}

// DeliverLinkPacket implements stack.NetworkDispatcher (packet sockets).
// Tagged frames stay out of the untagged stack here too.
func (p *port) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	s := p.l.snap.Load()
	if s.dist.rx&p.bit() != 0 && s.dispatcher != nil && !isVLANTPID(proto) {
		s.dispatcher.DeliverLinkPacket(proto, pkt)
	}
}

// sendFrame sends a complete Ethernet frame (an LACPDU, a marker, a link
// monitor's probe) on p, whatever the distribution. Protocols reach it
// through protoCtx.send.
func (p *port) sendFrame(frame []byte) error {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: int(p.child.MaxHeaderLength()),
		Payload:            buffer.MakeWithData(frame[header.EthernetMinimumSize:]),
	})
	defer pkt.DecRef()
	copy(pkt.LinkHeader().Push(header.EthernetMinimumSize), frame[:header.EthernetMinimumSize])
	pkt.NetworkProtocolNumber = tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(frame[12:14]))
	var list stack.PacketBufferList
	list.PushBack(pkt)
	if _, err := p.child.WritePackets(list); err != nil {
		p.ctr.drop(DropTxError, 1)
		return fmt.Errorf("port %s: %s", p.name, err)
	}
	p.ctr.tx(1, len(frame))
	if cs := p.l.capture.cur.Load(); cs != nil {
		cs.deliverBytes(p, Out, frame)
	}
	return nil
}
