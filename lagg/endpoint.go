package lagg

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/linkep"
)

// The stack.LinkEndpoint methods that are not the data path.

// MTU implements stack.LinkEndpoint.
func (l *Lagg) MTU() uint32 { return l.mtu.Load() }

// SetMTU implements stack.LinkEndpoint (Stack.SetNICMTU): it is
// Update(func(c *Config) { c.MTU = mtu }), logged when refused. Use Update or
// Apply to learn whether it worked.
func (l *Lagg) SetMTU(mtu uint32) {
	if err := l.Update(func(c *Config) { c.MTU = mtu }); err != nil {
		l.log.Warn("MTU change refused", "err", err)
	}
}

// MaxHeaderLength implements stack.LinkEndpoint: the largest of the ports'.
func (l *Lagg) MaxHeaderLength() uint16 { return uint16(l.maxHdr.Load()) }

// LinkAddress implements stack.LinkEndpoint.
func (l *Lagg) LinkAddress() tcpip.LinkAddress { return l.snap.Load().mac }

// SetLinkAddress implements stack.LinkEndpoint: it configures the MAC (see
// Config.MAC), logged when refused.
func (l *Lagg) SetLinkAddress(addr tcpip.LinkAddress) {
	if err := l.Update(func(c *Config) { c.MAC = addr }); err != nil {
		l.log.Warn("MAC change refused", "err", err)
	}
}

// Capabilities implements stack.LinkEndpoint.
func (l *Lagg) Capabilities() stack.LinkEndpointCapabilities { return l.snap.Load().caps }

// GSOMaxSize implements stack.GSOEndpoint.
func (l *Lagg) GSOMaxSize() uint32 { return l.snap.Load().gsoMax }

// SupportedGSO implements stack.GSOEndpoint: the kind every port supports.
func (l *Lagg) SupportedGSO() stack.SupportedGSO { return l.snap.Load().gso }

// ARPHardwareType implements stack.LinkEndpoint.
func (*Lagg) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint. The NIC calls it only on the
// outermost endpoint, so the lagg writes the Ethernet header and the ports
// send the frame as it is.
func (*Lagg) AddHeader(pkt *stack.PacketBuffer) { linkep.AddEthernetHeader(pkt) }

// ParseHeader implements stack.LinkEndpoint.
func (*Lagg) ParseHeader(pkt *stack.PacketBuffer) bool { return linkep.ParseEthernetHeader(pkt) }

// Attach implements stack.LinkEndpoint. Each port is attached to its own
// shim so the lagg knows where a frame came in; nil reaches every port as a
// literal nil. The stack attaches once, when it creates the NIC, and
// detaches once, when it removes it: after Attach(nil) no port is attached
// again (some endpoints, gVisor's fdbased among them, are single-use).
//
// The stack calls Attach(nil) with its own lock held, and a port's receive
// goroutine may be inside the stack waiting for that lock, so the ports are
// detached (which waits for those goroutines) on another goroutine; from now
// on the shims drop what they receive. Close waits for the detach.
func (l *Lagg) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.detached {
		return
	}
	if d != nil {
		l.dispatcher = d
		for _, p := range l.ports {
			if !p.attached {
				p.child.Attach(p)
				p.attached = true
			}
		}
		l.rebuildLocked()
		return
	}
	l.detached = true
	l.dispatcher = nil
	var detach []*port
	for _, p := range l.ports {
		if p.attached {
			p.attached = false
			detach = append(detach, p)
		}
	}
	l.rebuildLocked()
	if len(detach) == 0 {
		return
	}
	l.wg.Add(1)
	l.detaching.Add(1)
	go func() {
		defer l.wg.Done()
		defer l.detaching.Done()
		for _, p := range detach {
			p.child.Attach(nil)
		}
	}()
}

// IsAttached implements stack.LinkEndpoint.
func (l *Lagg) IsAttached() bool { return l.snap.Load().dispatcher != nil }

// Wait implements stack.LinkEndpoint. The stack calls it with its own lock
// held, so it waits for nothing that may be calling into the stack: not the
// control goroutine and not the ports' receive goroutines. Close, which the
// stack calls after releasing its lock, waits for all of them.
func (l *Lagg) Wait() {}

// SetOnCloseAction implements stack.LinkEndpoint. A lagg never dies on its
// own (it lives on with no ports), so there is nothing to call.
func (*Lagg) SetOnCloseAction(func()) {}
