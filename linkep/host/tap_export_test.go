package host

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// NewTAPForDeliver is a TAP with no device, for driving its receive path:
// addr is both its MAC and the MAC it started with.
func NewTAPForDeliver(addr tcpip.LinkAddress, vnet bool) *TAP {
	t := &TAP{own: addr, vnet: vnet, rx: newTapRx(vnet)}
	t.setAddr(addr)
	return t
}

// DeliverFrame puts frame (and vnet, when the TAP has a header) in the read
// buffer as a readv would and delivers it to d.
func (t *TAP) DeliverFrame(d stack.NetworkDispatcher, vnet [vnetHdrSize]byte, frame []byte) {
	r := t.rx
	r.slot.refill()
	r.slot.vnet = vnet
	n := len(frame)
	for i, v := range r.slot.views {
		b := v.AsSlice()
		if i == 0 {
			b = b[afRxHeadroom:]
		}
		frame = frame[copy(b, frame):]
	}
	if t.vnet {
		n += vnetHdrSize
	}
	t.deliver(d, r, n)
}

// ReleaseRx returns the read buffer's views.
func (t *TAP) ReleaseRx() { t.rx.slot.release() }
